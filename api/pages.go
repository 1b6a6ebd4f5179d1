package api

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
)

//go:embed web/templates/*.html
var templateFS embed.FS

//go:embed web/static
var staticFS embed.FS

// pages holds one parsed template set per page, each made of the layout and the page.
type pages struct {
	byName map[string]*template.Template
}

func loadPages() (*pages, error) {
	funcs := template.FuncMap{
		// join lists resource types in the reader's language.
		"join": func(types []string, l localizer) string {
			out := make([]string, 0, len(types))
			for _, t := range types {
				out = append(out, l.T("type."+t))
			}
			return strings.Join(out, ", ")
		},
	}
	layout, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "web/templates/layout.html")
	if err != nil {
		return nil, fmt.Errorf("parse layout: %w", err)
	}
	names, err := fs.Glob(templateFS, "web/templates/*.html")
	if err != nil {
		return nil, err
	}
	p := &pages{byName: map[string]*template.Template{}}
	for _, n := range names {
		base := strings.TrimSuffix(strings.TrimPrefix(n, "web/templates/"), ".html")
		if base == "layout" {
			continue
		}
		t, err := template.Must(layout.Clone()).ParseFS(templateFS, n)
		if err != nil {
			return nil, fmt.Errorf("parse page %s: %w", base, err)
		}
		p.byName[base] = t
	}
	return p, nil
}

// render writes a page. It renders into a buffer first, so a template error becomes a clean 500, never half a page.
func (p *pages) render(c echo.Context, status int, name string, data any) error {
	t, ok := p.byName[name]
	if !ok {
		return fmt.Errorf("render: no page %q", name)
	}
	var b bytes.Buffer
	if err := t.ExecuteTemplate(&b, "layout", data); err != nil {
		return fmt.Errorf("render %s: %w", name, err)
	}
	h := c.Response().Header()
	h.Set("Cache-Control", "no-store")
	return c.HTMLBlob(status, b.Bytes())
}

// messageView is the data of the message page.
type messageView struct {
	L       localizer
	Message string
	Back    string
}

// static serves the pages' stylesheet: the files of web/static by name, nothing else (no directory listing, no
// path below it). Anything else is the gateway's own 404.
type static struct{}

func (static) mount(e *echo.Echo) {
	sub, err := fs.Sub(staticFS, "web/static")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	files := echo.WrapHandler(http.StripPrefix("/static/", http.FileServer(http.FS(sub))))
	e.GET("/static/*", func(c echo.Context) error {
		name := strings.TrimPrefix(c.Request().URL.Path, "/static/")
		if st, err := fs.Stat(sub, name); err != nil || st.IsDir() || strings.Contains(name, "/") {
			return echo.ErrNotFound
		}
		return files(c)
	})
}

// consentView is the data of the consent page.
type consentView struct {
	L           localizer
	Requester   string
	Provider    string
	Types       []string
	Until       time.Time
	Sources     []sourceView
	Withdrawn   bool
	CanWithdraw bool
	WithdrawURL string
	CSRF        string
	// SignInToWithdraw: consent was given, but not in this browser session; to withdraw it here the patient first
	// signs in again at a source (each granted source's VerifyURL).
	SignInToWithdraw bool
}

// sourceView is one source on the consent page.
type sourceView struct {
	ID, Name, Kind string
	// State is "pending", "granted" or "withdrawn".
	State        string
	NotGranted   []string
	AuthorizeURL string
	VerifyURL    string
}
