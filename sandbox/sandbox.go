package sandbox

import (
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"

	"golang.org/x/sync/errgroup"
)

//go:embed seed/*.json
var seed embed.FS

// DefaultSiteName is the site served when Options.Sites is empty, so the default base is http://ADDR/hospital/fhir.
const DefaultSiteName = "hospital"

// Defaults and bounds for search paging.
const (
	DefaultPageSize = 20
	MaxPageSize     = 200
	// maxBundleFile bounds a single file read by LoadDir.
	maxBundleFile = 256 << 20
)

// Options configures a Server. The zero value serves one site named "hospital" with the embedded seed bundles.
type Options struct {
	Sites []SiteOptions
	// Logger receives one line per request (site, method, interaction, resource type, status, duration; never the
	// path, query or body). Nil discards.
	Logger *slog.Logger
}

// SiteOptions configures one site, served under /{Name}/fhir.
type SiteOptions struct {
	// Name is the URL segment of the site, e.g. "hospital"; empty means DefaultSiteName.
	Name string
	// Bundles are the transaction, batch or collection Bundles to load, in order (later duplicates win). Nil or
	// empty gives a site with no data.
	Bundles [][]byte
	// DisableInclude stops the site from supporting and advertising _include=DiagnosticReport:result, so that a
	// client's fallback path (fetching each result) can be tested.
	DisableInclude bool
	// ExternalizeAttachments moves inline Attachment.data of DiagnosticReport.presentedForm and
	// DocumentReference.content.attachment into Binary resources, replacing data with url <base>/Binary/<id>.
	ExternalizeAttachments bool
	// DefaultPageSize (0 means 20) is the page size when a search has no _count; MaxPageSize (0 means 200) caps
	// _count.
	DefaultPageSize, MaxPageSize int
	// Auth, if set, gives the site a SMART authorization server at /{Name}/auth and makes its FHIR server require
	// that server's access tokens (see auth.go). Nil keeps the FHIR server open.
	Auth *AuthOptions
}

// Server hosts one or more sites. It is safe for concurrent use; its data never changes after New.
type Server struct {
	sites  map[string]*Site
	logger *slog.Logger
}

// Site is one simulated FHIR server with its own data, base URL, request counter and faults.
type Site struct {
	name            string
	store           *store
	defaultPageSize int
	maxPageSize     int
	disableInclude  bool
	faults          Faults
	requests        atomic.Int64
	logger          *slog.Logger
	auth            *authServer // nil: no authorization server, open FHIR server
}

// New loads and indexes every site's bundles up front. It reports every configuration problem at once and fails
// on any bundle it cannot parse.
func New(opts Options) (*Server, error) {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	sites := opts.Sites
	if len(sites) == 0 {
		bundles, err := DefaultBundles()
		if err != nil {
			return nil, err
		}
		sites = []SiteOptions{{Name: DefaultSiteName, Bundles: bundles}}
	}
	var problems []error
	seen := map[string]bool{}
	resolved := make([]SiteOptions, len(sites))
	for i, so := range sites {
		if so.Name == "" {
			so.Name = DefaultSiteName
		}
		if !validSiteName(so.Name) {
			problems = append(problems, fmt.Errorf("site %d: name %q is not a plain URL segment", i, so.Name))
		}
		if seen[so.Name] {
			problems = append(problems, fmt.Errorf("site %d: name %q is used twice", i, so.Name))
		}
		seen[so.Name] = true
		if so.DefaultPageSize < 0 || so.MaxPageSize < 0 {
			problems = append(problems, fmt.Errorf("site %q: page sizes must not be negative", so.Name))
		}
		if so.DefaultPageSize == 0 {
			so.DefaultPageSize = DefaultPageSize
		}
		if so.MaxPageSize == 0 {
			so.MaxPageSize = MaxPageSize
		}
		if so.DefaultPageSize > so.MaxPageSize {
			problems = append(problems, fmt.Errorf("site %q: DefaultPageSize %d exceeds MaxPageSize %d",
				so.Name, so.DefaultPageSize, so.MaxPageSize))
		}
		if so.Auth != nil {
			problems = append(problems, so.Auth.validate(so.Name)...)
		}
		resolved[i] = so
	}
	if err := errors.Join(problems...); err != nil {
		return nil, fmt.Errorf("configure sandbox: %w", err)
	}

	srv := &Server{sites: map[string]*Site{}, logger: logger}
	built := make([]*Site, len(resolved))
	var g errgroup.Group
	for i, so := range resolved {
		g.Go(func() error {
			st, err := loadStore(so.Bundles, so.ExternalizeAttachments)
			if err != nil {
				return fmt.Errorf("load site %q: %w", so.Name, err)
			}
			built[i] = &Site{
				name:            so.Name,
				store:           st,
				defaultPageSize: so.DefaultPageSize,
				maxPageSize:     so.MaxPageSize,
				disableInclude:  so.DisableInclude,
				logger:          logger.With("site", so.Name),
			}
			if so.Auth != nil {
				a, err := newAuthServer(built[i], *so.Auth, built[i].logger)
				if err != nil {
					return fmt.Errorf("site %q: start authorization server: %w", so.Name, err)
				}
				built[i].auth = a
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	for _, s := range built {
		srv.sites[s.name] = s
	}
	return srv, nil
}

func validSiteName(n string) bool {
	if n == "" || n == "." || n == ".." || len(n) > 64 {
		return false
	}
	for i := 0; i < len(n); i++ {
		c := n[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// Handler returns the HTTP handler serving every site under /{site}/fhir.
func (s *Server) Handler() http.Handler { return http.HandlerFunc(s.serveHTTP) }

// Site returns the named site, or nil if there is none.
func (s *Server) Site(name string) *Site { return s.sites[name] }

// Name returns the site's URL segment.
func (s *Site) Name() string { return s.name }

// Faults returns the site's fault injector.
func (s *Site) Faults() *Faults { return &s.faults }

// Requests returns how many HTTP requests the site's FHIR server has received, faulted ones included (requests to
// its authorization server are not counted).
func (s *Site) Requests() int64 { return s.requests.Load() }

// Patients returns the ids of the site's Patient resources, sorted.
func (s *Site) Patients() []string {
	ts := s.store.types["Patient"]
	if ts == nil {
		return nil
	}
	ids := make([]string, 0, len(ts.all))
	for _, r := range ts.all {
		ids = append(ids, r.id)
	}
	return ids
}

// DefaultBundles returns the embedded seed set: two Synthea patients plus the shared hospital and practitioner
// information bundles, sorted by file name.
func DefaultBundles() ([][]byte, error) {
	names, err := fs.Glob(seed, "seed/*.json")
	if err != nil {
		return nil, fmt.Errorf("list seed bundles: %w", err)
	}
	slices.Sort(names)
	out := make([][]byte, 0, len(names))
	for _, n := range names {
		b, err := seed.ReadFile(n)
		if err != nil {
			return nil, fmt.Errorf("read seed bundle %s: %w", path.Base(n), err)
		}
		out = append(out, b)
	}
	return out, nil
}

// LoadDir reads every *.json file directly in dir (not recursively), sorted by name. It does not parse them; New
// does.
func LoadDir(dir string) ([][]byte, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read bundle dir: %w", err)
	}
	var out [][]byte
	for _, e := range entries { // os.ReadDir sorts by file name
		if !e.Type().IsRegular() || !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		info, err := e.Info()
		if err != nil {
			return nil, fmt.Errorf("stat bundle %s: %w", e.Name(), err)
		}
		if info.Size() > maxBundleFile {
			return nil, fmt.Errorf("read bundle %s: larger than %d bytes", e.Name(), maxBundleFile)
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name())) //nolint:gosec // G304: dir is the operator's (secondlook sandbox --data) or a test's testdata
		if err != nil {
			return nil, fmt.Errorf("read bundle %s: %w", e.Name(), err)
		}
		out = append(out, b)
	}
	return out, nil
}

// serveHTTP dispatches /{site}/fhir/... to the site and /{site}/auth/... to its authorization server.
func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	rest := strings.TrimPrefix(r.URL.Path, "/")
	name, rest, _ := strings.Cut(rest, "/")
	site := s.sites[name]
	if site != nil && site.auth != nil && (rest == "auth" || strings.HasPrefix(rest, "auth/")) {
		site.auth.ServeHTTP(w, r)
		return
	}
	if site == nil || (rest != "fhir" && !strings.HasPrefix(rest, "fhir/")) {
		resp := errorResponse(errorf(http.StatusNotFound, "not-found", "no FHIR endpoint at this path"))
		s.logger.LogAttrs(r.Context(), slog.LevelInfo, "sandbox request",
			slog.String("method", r.Method), slog.String("interaction", "unknown-site"), slog.Int("status", resp.status))
		writeResponse(w, r, resp, nil)
		return
	}
	site.serve(w, r, strings.TrimPrefix(rest, "fhir"))
}
