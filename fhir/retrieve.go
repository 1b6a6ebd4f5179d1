package fhir

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
	models "github.com/samply/golang-fhir-models/fhir-models/fhir"
	"golang.org/x/sync/errgroup"
)

// Resource types the client retrieves by patient search.
const (
	TypeDiagnosticReport  = "DiagnosticReport"
	TypeImagingStudy      = "ImagingStudy"
	TypeCondition         = "Condition"
	TypeDocumentReference = "DocumentReference"
	TypeObservation       = "Observation"
	TypePatient           = "Patient"
	TypeBinary            = "Binary"
)

// DefaultTypes returns the types retrieved when a Query names none.
func DefaultTypes() []string { return []string{TypeDiagnosticReport, TypeImagingStudy, TypeCondition} }

// SearchableTypes returns the types a Query may name. Observations come only as DiagnosticReport results, and Binaries
// only as attachments, so that a packet holds what a report refers to rather than every vital sign ever taken.
func SearchableTypes() []string {
	return []string{TypeDiagnosticReport, TypeImagingStudy, TypeCondition, TypeDocumentReference}
}

// observationBatch is how many Observation ids one _id search names.
const observationBatch = 50

// Query says what to retrieve for one patient.
type Query struct {
	// PatientID is the Patient's logical id at this source.
	PatientID string
	// Types are the resource types to search; empty means DefaultTypes.
	Types []string
	// Since, when set, limits DiagnosticReports, ImagingStudies and DocumentReferences to those dated on or after it
	// (when the server supports the date parameter). Conditions are never limited: a chronic problem recorded years
	// ago is still the patient's problem.
	Since time.Time
	// Tokens, when set, authorizes this retrieval instead of Options.Tokens: one Client serves a source for every
	// patient, each with the grant they gave.
	Tokens TokenSource
}

// Record is one patient's records from one source.
type Record struct {
	Patient Resource
	// Resources holds every retrieved resource except the Patient, by type, each list sorted by id.
	Resources map[string][]Resource
	Warnings  []Warning
	Stats     Stats
}

// Stats counts the work a retrieval did.
type Stats struct {
	Requests int   // HTTP requests sent, retries included
	Retries  int   // of which retries
	Pages    int   // searchset pages read
	Bytes    int64 // response bytes read
}

// Warning reports something the retrieval left out, and why, without saying which resource: codes and counts only.
type Warning struct {
	Code         string `json:"code"`
	ResourceType string `json:"resourceType,omitempty"`
	Count        int    `json:"count"`
}

// Warning codes.
const (
	WarnSubjectMismatch    = "subject-mismatch"     // a resource about another patient was dropped
	WarnInvalidResource    = "invalid-resource"     // a resource that is not valid FHIR R4 was dropped
	WarnForeignReference   = "foreign-reference"    // a reference outside the source was not followed
	WarnResultNotFound     = "result-not-found"     // a DiagnosticReport.result the server could not return
	WarnTypeUnsupported    = "type-unsupported"     // the server cannot search this type by patient
	WarnForeignAttachment  = "foreign-attachment"   // an attachment URL outside the source was not fetched
	WarnAttachmentTooLarge = "attachment-too-large" // an attachment over max_attachment_bytes was not fetched
	WarnAttachmentMissing  = "attachment-not-found" // an attachment URL the server could not return
	WarnSearchOutcome      = "search-outcome"       // the server attached an OperationOutcome to a search
)

// run is the state of one Retrieve call.
type run struct {
	c         *Client
	patientID string
	st        *stats

	mu        sync.Mutex
	pages     int
	count     int
	resources map[string]map[string]Resource
	warnings  map[[2]string]int
	// referenced holds the Observation ids that kept DiagnosticReports name; Observations a server includes beyond
	// those are not kept.
	referenced map[string]bool
	// reports holds each kept DiagnosticReport decoded once with the typed R4 models.
	reports map[string]*models.DiagnosticReport
}

// Retrieve reads one patient's records: the Patient; the DiagnosticReports with every Observation their result
// elements name (by _include=DiagnosticReport:result where the server supports it, else by _id searches in batches,
// else by reads); the other requested types; and the Binary attachments that DiagnosticReports and
// DocumentReferences reference by URL on the same base. Types are searched concurrently within the Client's
// concurrency bound. Any limit reached ends the retrieval with a *LimitError: a record is complete or it is an error.
func (c *Client) Retrieve(ctx context.Context, q Query) (*Record, error) {
	if !validID(q.PatientID) {
		return nil, errors.New("fhir: patient id is not a valid FHIR id")
	}
	types := q.Types
	if len(types) == 0 {
		types = DefaultTypes()
	}
	for _, t := range types {
		if !slices.Contains(SearchableTypes(), t) {
			return nil, fmt.Errorf("fhir: resource type %q cannot be retrieved", t)
		}
	}
	r := &run{
		c:         c,
		patientID: q.PatientID,
		st:        &stats{maxBytes: c.opts.Limits.MaxBytes, tokens: q.Tokens},
		resources: map[string]map[string]Resource{},
		warnings:  map[[2]string]int{},
		reports:   map[string]*models.DiagnosticReport{},
	}
	caps, err := c.capabilities(ctx, r.st)
	if err != nil {
		return nil, fmt.Errorf("retrieve: %w", err)
	}
	start := time.Now()
	rec := &Record{}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		p, err := r.read(gctx, TypePatient, q.PatientID, fhirJSON)
		if err != nil {
			return err
		}
		rec.Patient = p
		return nil
	})
	for _, t := range types {
		g.Go(func() error {
			params, ok := r.searchParams(caps, t, q)
			if !ok {
				r.warn(WarnTypeUnsupported, t, 1)
				return nil
			}
			return r.search(gctx, t, params)
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	if slices.Contains(types, TypeDiagnosticReport) {
		if err := r.results(ctx, caps); err != nil {
			return nil, err
		}
	}
	if err := r.attachments(ctx); err != nil {
		return nil, err
	}
	r.finish(rec)
	c.log.LogAttrs(ctx, slog.LevelInfo, "fhir retrieval",
		slog.Int("requests", rec.Stats.Requests), slog.Int("retries", rec.Stats.Retries), slog.Int("pages", rec.Stats.Pages),
		slog.Int64("bytes", rec.Stats.Bytes), slog.Int("resources", r.count), slog.Int("warnings", len(rec.Warnings)),
		slog.Duration("duration", time.Since(start)))
	return rec, nil
}

// searchParams builds the patient search for type t, or reports that the server cannot do one.
func (r *run) searchParams(caps *Capabilities, t string, q Query) (url.Values, bool) {
	if !caps.CanSearch(t) {
		return nil, false
	}
	v := url.Values{}
	switch {
	case caps.Supports(t, "patient"):
		v.Set("patient", q.PatientID)
	case caps.Supports(t, "subject"):
		v.Set("subject", "Patient/"+q.PatientID)
	default:
		return nil, false
	}
	if !q.Since.IsZero() {
		dateParam := map[string]string{TypeDiagnosticReport: "date", TypeImagingStudy: "started", TypeDocumentReference: "date"}[t]
		if dateParam != "" && caps.Supports(t, dateParam) {
			v.Set(dateParam, "ge"+q.Since.UTC().Format("2006-01-02"))
		}
	}
	if t == TypeDiagnosticReport && caps.SupportsInclude(t, "DiagnosticReport:result") {
		v.Set("_include", "DiagnosticReport:result")
	}
	v.Set("_count", strconv.Itoa(r.c.opts.PageSize))
	return v, true
}

// search pages through one search, filing every entry. Next links are followed only under the base URL.
func (r *run) search(ctx context.Context, t string, params url.Values) error {
	op := "search " + t
	u := r.c.base.JoinPath(t)
	u.RawQuery = params.Encode()
	seen := map[string]bool{}
	for n := 0; ; n++ {
		if n >= r.c.opts.Limits.MaxPages {
			return &LimitError{Op: op, Limit: "max_pages", Value: int64(r.c.opts.Limits.MaxPages)}
		}
		seen[u.String()] = true
		var p *page
		err := r.c.do(ctx, r.st, request{op: op, url: u, accept: fhirJSON, maxBody: r.c.opts.Limits.MaxBodyBytes},
			func(body io.Reader, resp *http.Response) error {
				if err := checkContentType(resp); err != nil {
					return fmt.Errorf("%s: %w", op, err)
				}
				var err error
				p, err = readSearchset(body, r.c.opts.Limits.MaxJSONDepth)
				if err != nil {
					var le *LimitError
					if errors.As(err, &le) {
						le.Op = op
						return le
					}
					return fmt.Errorf("%s: %w", op, err)
				}
				return nil
			})
		if err != nil {
			return err
		}
		r.mu.Lock()
		r.pages++
		r.mu.Unlock()
		if err := r.fileAll(t, p.entries); err != nil {
			return err
		}
		if p.next == "" {
			return nil
		}
		next, err := r.c.resolve(p.next)
		if err != nil {
			return fmt.Errorf("%s: next link refused: %w", op, err)
		}
		if seen[next.String()] {
			return fmt.Errorf("%s: %w", op, ErrPagingLoop)
		}
		u = next
	}
}

// file keeps one search entry: matches of the searched type, and included Observations.
func (r *run) file(searched string, e entry) error {
	res := e.resource
	if res.Type == "" {
		return nil
	}
	if res.Type == "OperationOutcome" || e.mode == "outcome" {
		r.warn(WarnSearchOutcome, searched, 1)
		return nil
	}
	isMatch := res.Type == searched && e.mode != "include"
	isResult := searched == TypeDiagnosticReport && res.Type == TypeObservation
	if !isMatch && !isResult {
		return nil
	}
	return r.keep(res)
}

// fileAll files a page's entries. Checking them (DiagnosticReports are decoded whole with the typed models) is
// the CPU-heavy part of retrieval, so a large page is split across the processors.
func (r *run) fileAll(searched string, entries []entry) error {
	workers := min(runtime.GOMAXPROCS(0), len(entries)/minEntriesPerWorker)
	if workers < 2 {
		for _, e := range entries {
			if err := r.file(searched, e); err != nil {
				return err
			}
		}
		return nil
	}
	var g errgroup.Group
	size := (len(entries) + workers - 1) / workers
	for part := range slices.Chunk(entries, size) {
		g.Go(func() error {
			for _, e := range part {
				if err := r.file(searched, e); err != nil {
					return err
				}
			}
			return nil
		})
	}
	return g.Wait()
}

// minEntriesPerWorker keeps small pages on one goroutine.
const minEntriesPerWorker = 32

// keep checks that a resource is about this patient and valid enough to use, then stores it once.
func (r *run) keep(res Resource) error {
	var dr *models.DiagnosticReport
	var subject string
	var err error
	switch res.Type {
	case TypeBinary: // an attachment's content, read because a kept report points at it: it has no subject
	case TypeDiagnosticReport:
		var rep models.DiagnosticReport
		if rep, err = models.UnmarshalDiagnosticReport(res.Raw); err == nil {
			dr = &rep
			if rep.Subject != nil && rep.Subject.Reference != nil {
				subject = *rep.Subject.Reference
			}
		}
	default:
		subject, err = subjectOf(res)
	}
	if err != nil {
		r.warn(WarnInvalidResource, res.Type, 1)
		return nil
	}
	// Every resource but a Binary must name this patient as its subject: one that names no one cannot be shown to
	// be the patient's, and is dropped like one about someone else.
	if res.Type != TypeBinary && !r.isPatient(subject) {
		r.warn(WarnSubjectMismatch, res.Type, 1)
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	byID := r.resources[res.Type]
	if byID == nil {
		byID = map[string]Resource{}
		r.resources[res.Type] = byID
	}
	if _, dup := byID[res.ID]; dup {
		return nil
	}
	r.count++
	if r.count > r.c.opts.Limits.MaxResources {
		return &LimitError{Op: "retrieve", Limit: "max_resources", Value: int64(r.c.opts.Limits.MaxResources)}
	}
	byID[res.ID] = res
	if dr != nil {
		r.reports[res.ID] = dr
	}
	return nil
}

// subjectOf returns the patient reference of a resource other than a DiagnosticReport (those are decoded whole
// with the typed R4 models in keep, since their results and attachments are needed too, and a report the models
// reject is not valid R4).
func subjectOf(res Resource) (string, error) {
	var s struct {
		Subject *struct {
			Reference string `json:"reference"`
		} `json:"subject"`
	}
	if err := jsonv2.Unmarshal(res.Raw, &s); err != nil {
		return "", err
	}
	if s.Subject == nil {
		return "", nil
	}
	return s.Subject.Reference, nil
}

// isPatient reports whether ref points at this retrieval's Patient (no reference does not).
func (r *run) isPatient(ref string) bool {
	t, id, ok := r.localRef(ref)
	return ok && t == TypePatient && id == r.patientID
}

// localRef parses a reference to a resource on this source: "Type/id", "Type/id/_history/v", or an absolute URL
// under the base. Anything else (contained "#x", another server, urn:) is not local.
func (r *run) localRef(ref string) (typ, id string, ok bool) {
	if strings.HasPrefix(ref, "#") || strings.HasPrefix(ref, "urn:") {
		return "", "", false
	}
	rel := ref
	if strings.Contains(ref, "://") {
		u, err := url.Parse(ref)
		if err != nil || !r.c.underBase(u) || u.RawQuery != "" {
			return "", "", false
		}
		rel = strings.TrimPrefix(strings.TrimPrefix(u.Path, r.c.base.Path), "/")
	}
	parts := strings.Split(rel, "/")
	if len(parts) != 2 && !(len(parts) == 4 && parts[2] == "_history") {
		return "", "", false
	}
	if !validType(parts[0]) || !validID(parts[1]) {
		return "", "", false
	}
	return parts[0], parts[1], true
}

// results fetches the Observations that DiagnosticReport.result names and the search did not already include.
func (r *run) results(ctx context.Context, caps *Capabilities) error {
	var missing []string
	seen := map[string]bool{}
	r.mu.Lock()
	r.referenced = seen
	have := r.resources[TypeObservation]
	for _, rep := range r.reports {
		for _, ref := range rep.Result {
			if ref.Reference == nil {
				continue
			}
			t, id, ok := r.localRef(*ref.Reference)
			if !ok || t != TypeObservation {
				if !strings.HasPrefix(*ref.Reference, "#") {
					r.warnLocked(WarnForeignReference, TypeObservation, 1)
				}
				continue
			}
			if seen[id] {
				continue
			}
			seen[id] = true
			if _, ok := have[id]; !ok {
				missing = append(missing, id)
			}
		}
	}
	r.mu.Unlock()
	if len(missing) == 0 {
		return nil
	}
	slices.Sort(missing)
	if caps.CanSearch(TypeObservation) && caps.Supports(TypeObservation, "_id") {
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(r.c.opts.Concurrency)
		for batch := range slices.Chunk(missing, observationBatch) {
			g.Go(func() error {
				v := url.Values{}
				v.Set("_id", strings.Join(batch, ","))
				if caps.Supports(TypeObservation, "patient") {
					v.Set("patient", r.patientID)
				}
				v.Set("_count", strconv.Itoa(max(r.c.opts.PageSize, len(batch))))
				return r.search(gctx, TypeObservation, v)
			})
		}
		if err := g.Wait(); err != nil {
			return err
		}
		r.mu.Lock()
		var still []string
		for _, id := range missing {
			if _, ok := r.resources[TypeObservation][id]; !ok {
				still = append(still, id)
			}
		}
		r.mu.Unlock()
		missing = still
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(r.c.opts.Concurrency)
	for _, id := range missing {
		g.Go(func() error {
			res, err := r.read(gctx, TypeObservation, id, fhirJSON)
			if errors.Is(err, ErrNotFound) {
				r.warn(WarnResultNotFound, TypeObservation, 1)
				return nil
			}
			if err != nil {
				return err
			}
			return r.keep(res)
		})
	}
	return g.Wait()
}

// read performs a FHIR read of Type/id.
func (r *run) read(ctx context.Context, t, id, accept string) (Resource, error) {
	op := "read " + t
	var res Resource
	err := r.c.do(ctx, r.st, request{op: op, url: r.c.base.JoinPath(t, id), accept: accept, maxBody: r.c.opts.Limits.MaxBodyBytes},
		func(body io.Reader, resp *http.Response) error {
			if err := checkContentType(resp); err != nil {
				return fmt.Errorf("%s: %w", op, err)
			}
			var err error
			res, err = readResource(body, r.c.opts.Limits.MaxJSONDepth)
			if err != nil {
				return wrapRead(op, err)
			}
			return nil
		})
	if err != nil {
		return Resource{}, err
	}
	if res.Type != t || res.ID != id {
		return Resource{}, fmt.Errorf("%s: %w: server returned another resource", op, ErrInvalidResponse)
	}
	return res, nil
}

func wrapRead(op string, err error) error {
	var le *LimitError
	if errors.As(err, &le) {
		le.Op = op
		return le
	}
	return fmt.Errorf("%s: %w", op, err)
}

// attachments fetches Binary attachments named by URL (without inline data) in DiagnosticReport.presentedForm and
// DocumentReference.content.attachment, when the URL is on this source.
func (r *run) attachments(ctx context.Context) error {
	type want struct {
		id   string
		size int
	}
	var wants []want
	seen := map[string]bool{}
	r.mu.Lock()
	collect := func(atts []models.Attachment) {
		for _, a := range atts {
			if a.Url == nil || (a.Data != nil && *a.Data != "") {
				continue
			}
			t, id, ok := r.localRef(*a.Url)
			if !ok || t != TypeBinary {
				r.warnLocked(WarnForeignAttachment, TypeBinary, 1)
				continue
			}
			if seen[id] {
				continue
			}
			seen[id] = true
			size := 0
			if a.Size != nil {
				size = *a.Size
			}
			wants = append(wants, want{id: id, size: size})
		}
	}
	for _, rep := range r.reports {
		collect(rep.PresentedForm)
	}
	for _, doc := range r.resources[TypeDocumentReference] {
		if d, err := models.UnmarshalDocumentReference(doc.Raw); err == nil {
			for _, c := range d.Content {
				collect([]models.Attachment{c.Attachment})
			}
		} else {
			r.warnLocked(WarnInvalidResource, TypeDocumentReference, 1)
		}
	}
	r.mu.Unlock()

	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(r.c.opts.Concurrency)
	for _, w := range wants {
		if int64(w.size) > r.c.opts.Limits.MaxAttachmentBytes {
			r.warn(WarnAttachmentTooLarge, TypeBinary, 1)
			continue
		}
		g.Go(func() error {
			res, err := r.binary(gctx, w.id)
			var le *LimitError
			switch {
			case errors.As(err, &le) && le.Limit == "max_body_bytes":
				r.warn(WarnAttachmentTooLarge, TypeBinary, 1)
				return nil
			case errors.Is(err, ErrNotFound):
				r.warn(WarnAttachmentMissing, TypeBinary, 1)
				return nil
			case err != nil:
				return err
			}
			return r.keep(res)
		})
	}
	return g.Wait()
}

// binary reads Binary/id. Servers answer with a Binary resource (as asked) or, some of them, with the raw content;
// the latter is wrapped into a Binary resource so later stages see one shape.
func (r *run) binary(ctx context.Context, id string) (Resource, error) {
	op := "read Binary"
	var res Resource
	// A base64 Binary resource is 4/3 the size of its content, plus a little.
	maxBody := r.c.opts.Limits.MaxAttachmentBytes*4/3 + 4096
	err := r.c.do(ctx, r.st, request{op: op, url: r.c.base.JoinPath(TypeBinary, id), accept: fhirJSON, maxBody: maxBody},
		func(body io.Reader, resp *http.Response) error {
			var err error
			res, err = readBinary(body, resp.Header.Get("Content-Type"), id, r.c.opts.Limits.MaxAttachmentBytes, r.c.opts.Limits.MaxJSONDepth)
			return err
		})
	if err != nil {
		return Resource{}, err
	}
	if res.Type != TypeBinary || res.ID != id {
		return Resource{}, fmt.Errorf("%s: %w: server returned another resource", op, ErrInvalidResponse)
	}
	return res, nil
}

// readBinary decodes the answer to a Binary read: a Binary resource when the content type is FHIR JSON, else the raw
// content, which it wraps into a Binary resource with that content type so later stages see one shape. Content over
// maxBytes is a LimitError on max_body_bytes (the caller records it as an attachment too large).
func readBinary(body io.Reader, contentType, id string, maxBytes int64, maxDepth int) (Resource, error) {
	const op = "read Binary"
	if isFHIRJSON(contentType) {
		res, err := readResource(body, maxDepth)
		if err != nil {
			return Resource{}, wrapRead(op, err)
		}
		var bin struct {
			Data string `json:"data"`
		}
		if err := json.Unmarshal(res.Raw, &bin); err != nil {
			return Resource{}, fmt.Errorf("%s: %w: Binary is malformed", op, ErrInvalidResponse)
		}
		if int64(base64.StdEncoding.DecodedLen(len(bin.Data))) > maxBytes+2 {
			return Resource{}, &LimitError{Op: op, Limit: "max_body_bytes", Value: maxBytes}
		}
		return res, nil
	}
	data, err := io.ReadAll(io.LimitReader(body, maxBytes+1))
	if err != nil {
		return Resource{}, wrapRead(op, err)
	}
	if int64(len(data)) > maxBytes {
		return Resource{}, &LimitError{Op: op, Limit: "max_body_bytes", Value: maxBytes}
	}
	raw, err := json.Marshal(map[string]string{
		"resourceType": TypeBinary, "id": id, "contentType": contentType, "data": base64.StdEncoding.EncodeToString(data),
	})
	if err != nil {
		return Resource{}, fmt.Errorf("%s: wrap content: %w", op, err)
	}
	return Resource{Type: TypeBinary, ID: id, Raw: raw}, nil
}

func (r *run) warn(code, t string, n int) {
	r.mu.Lock()
	r.warnLocked(code, t, n)
	r.mu.Unlock()
}

func (r *run) warnLocked(code, t string, n int) { r.warnings[[2]string{code, t}] += n }

func (r *run) finish(rec *Record) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rec.Resources = map[string][]Resource{}
	for t, byID := range r.resources {
		list := make([]Resource, 0, len(byID))
		for _, res := range byID {
			if t == TypeObservation && !r.referenced[res.ID] {
				continue
			}
			list = append(list, res)
		}
		slices.SortFunc(list, func(a, b Resource) int { return strings.Compare(a.ID, b.ID) })
		rec.Resources[t] = list
	}
	for k, n := range r.warnings {
		rec.Warnings = append(rec.Warnings, Warning{Code: k[0], ResourceType: k[1], Count: n})
	}
	slices.SortFunc(rec.Warnings, func(a, b Warning) int {
		return strings.Compare(a.Code+"/"+a.ResourceType, b.Code+"/"+b.ResourceType)
	})
	r.st.mu.Lock()
	rec.Stats = Stats{Requests: r.st.requests, Retries: r.st.retries, Pages: r.pages, Bytes: r.st.bytes}
	r.st.mu.Unlock()
}

// Sourced is a record with the base URL of the source it came from.
type Sourced struct {
	BaseURL string
	Record  *Record
}

// CollectionBundle writes one or more sources' records as one collection Bundle (per source the Patient first, then
// each type in turn), each resource's JSON exactly as the server sent it, fullUrl its absolute URL at the source, so
// same-named resources of different sources stay apart.
func CollectionBundle(parts []Sourced) []byte {
	size := 64
	for _, p := range parts {
		size += len(p.Record.Patient.Raw) + 128
		for _, l := range p.Record.Resources {
			for _, r := range l {
				size += len(r.Raw) + 128
			}
		}
	}
	b := bytes.NewBuffer(make([]byte, 0, size))
	b.WriteString(`{"resourceType":"Bundle","type":"collection","entry":[`)
	first := true
	for _, p := range parts {
		base := strings.TrimRight(p.BaseURL, "/")
		add := func(r Resource) {
			if r.Type == "" {
				return
			}
			if !first {
				b.WriteByte(',')
			}
			first = false
			fu, _ := json.Marshal(base + "/" + r.Type + "/" + r.ID)
			b.WriteString(`{"fullUrl":`)
			b.Write(fu)
			b.WriteString(`,"resource":`)
			b.Write(r.Raw)
			b.WriteByte('}')
		}
		add(p.Record.Patient)
		types := make([]string, 0, len(p.Record.Resources))
		for t := range p.Record.Resources {
			types = append(types, t)
		}
		slices.Sort(types)
		for _, t := range types {
			for _, r := range p.Record.Resources[t] {
				add(r)
			}
		}
	}
	b.WriteString("]}")
	return b.Bytes()
}
