package demo

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
	"github.com/go-jose/go-jose/v4/jwt"
	"golang.org/x/net/html"

	"secondlook"
	"secondlook/caller"
	"secondlook/caller/callertest"
	"secondlook/review"
	"secondlook/store"
	"secondlook/store/storetest"
)

// The authorization matrix is written down in docs/authorization.md, one row per operation of openapi.yaml and
// resource, one column per kind of caller. TestAuthorizationMatrix reads it, checks that it covers every operation
// of openapi.yaml and names none that is not there, then sends every cell's request to the whole gateway (the demo:
// sandbox sites, SMART consent, assembly) and compares the status, and what the answer reveals.

const matrixDoc = "../docs/authorization.md"

// callerKinds are the matrix's columns, in order.
var callerKinds = []string{
	"anonymous", "patient", "ehr", "other-ehr", "provider", "other-provider",
	"expired", "bad-signature", "alg-none", "edited-payload", "wrong-audience", "untrusted-issuer",
}

// reviewRows are the resources an operation on a review (a path parameter id or review) is tried on.
var reviewRows = []string{"own", "other", "pending", "withdrawn", "expired", "none"}

// matrixRow is one row of the table: an operation on a resource, and the status expected for each caller kind.
type matrixRow struct {
	op, resource string
	want         map[string]int
	line         int
}

// readMatrix parses the first table of docs/authorization.md whose header starts "| operation | resource |".
func readMatrix(t *testing.T) []matrixRow {
	t.Helper()
	raw, err := os.ReadFile(matrixDoc)
	if err != nil {
		t.Fatal(err)
	}
	var rows []matrixRow
	var header []string
	cells := func(line string) []string {
		parts := strings.Split(strings.Trim(strings.TrimSpace(line), "|"), "|")
		for i := range parts {
			parts[i] = strings.Trim(strings.TrimSpace(parts[i]), "`")
		}
		return parts
	}
	for i, line := range strings.Split(string(raw), "\n") {
		if !strings.HasPrefix(line, "|") {
			if header != nil && len(rows) > 0 {
				break // the table ended
			}
			continue
		}
		c := cells(line)
		if header == nil {
			if len(c) > 2 && c[0] == "operation" && c[1] == "resource" {
				header = c
				if !slices.Equal(header[2:], callerKinds) {
					t.Fatalf("%s:%d: the columns are %v, want %v", matrixDoc, i+1, header[2:], callerKinds)
				}
			}
			continue
		}
		if strings.Trim(c[0], "-: ") == "" {
			continue // the separator line
		}
		if len(c) != len(header) {
			t.Fatalf("%s:%d: %d cells, want %d", matrixDoc, i+1, len(c), len(header))
		}
		r := matrixRow{op: c[0], resource: c[1], want: map[string]int{}, line: i + 1}
		for j, kind := range callerKinds {
			n, err := strconv.Atoi(c[j+2])
			if err != nil || n < 100 || n > 599 {
				t.Fatalf("%s:%d: %s: %q is not a status", matrixDoc, i+1, kind, c[j+2])
			}
			r.want[kind] = n
		}
		rows = append(rows, r)
	}
	if len(rows) == 0 {
		t.Fatalf("%s: no matrix table", matrixDoc)
	}
	return rows
}

// specOperation is one operation of openapi.yaml.
type specOperation struct {
	method, path string
	op           *openapi3.Operation
	params       []string // path parameter names
}

func (o specOperation) name() string { return o.method + " " + o.path }

// scheme is the security scheme the operation requires ("ehr", "provider"), or "".
func (o specOperation) scheme() string {
	if o.op.Security != nil {
		for _, req := range *o.op.Security {
			for name := range req {
				return name
			}
		}
	}
	return ""
}

// rowsFor is the set of resources an operation must have a row for, by its path parameters.
func (o specOperation) rowsFor() []string {
	switch {
	case slices.Contains(o.params, "id"), slices.Contains(o.params, "review"):
		return reviewRows
	case slices.Contains(o.params, "draft"):
		return []string{"other", "none"}
	case len(o.params) > 0:
		return []string{"-", "none"}
	}
	return []string{"-"}
}

func loadSpec(t *testing.T) (*openapi3.T, routers.Router, map[string]specOperation) {
	t.Helper()
	doc, err := openapi3.NewLoader().LoadFromData(secondlook.OpenAPI)
	if err != nil {
		t.Fatal(err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatal(err)
	}
	doc.Servers = nil
	router, err := legacy.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	ops := map[string]specOperation{}
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			so := specOperation{method: method, path: path, op: op}
			for _, seg := range strings.Split(path, "/") {
				if strings.HasPrefix(seg, "{") {
					so.params = append(so.params, strings.Trim(seg, "{}"))
				}
			}
			ops[so.name()] = so
		}
	}
	return doc, router, ops
}

// TestAuthorizationMatrixCoversOpenAPI fails when openapi.yaml has an operation the matrix does not list with every
// resource it needs, or the matrix lists an operation or a resource openapi.yaml does not have. It needs no gateway,
// so a new endpoint is caught even where the full matrix cannot run.
func TestAuthorizationMatrixCoversOpenAPI(t *testing.T) {
	_, _, ops := loadSpec(t)
	checkCoverage(t, readMatrix(t), ops)
}

func checkCoverage(t *testing.T, rows []matrixRow, ops map[string]specOperation) {
	t.Helper()
	listed := map[string][]string{}
	for _, r := range rows {
		o, ok := ops[r.op]
		if !ok {
			t.Errorf("%s:%d: %q is not an operation of openapi.yaml", matrixDoc, r.line, r.op)
			continue
		}
		if !slices.Contains(o.rowsFor(), r.resource) {
			t.Errorf("%s:%d: %s has no resource %q (its rows are %v)", matrixDoc, r.line, r.op, r.resource, o.rowsFor())
		}
		if slices.Contains(listed[r.op], r.resource) {
			t.Errorf("%s:%d: %s %s is listed twice", matrixDoc, r.line, r.op, r.resource)
		}
		listed[r.op] = append(listed[r.op], r.resource)
	}
	for name, o := range ops {
		for _, res := range o.rowsFor() {
			if !slices.Contains(listed[name], res) {
				t.Errorf("%s: openapi.yaml has %s, but the matrix has no row for it on resource %q", matrixDoc, name, res)
			}
		}
	}
}

// matrixEnv is the gateway with everything the matrix's cells refer to.
type matrixEnv struct {
	d                   *Demo
	issuer, untrusted   *callertest.Issuer
	ids                 map[string]string   // resource row → review (or draft) id
	owned               map[string][]string // caller kind → the ids it may see
	cookie, csrf, draft string
}

const matrixAudience = "https://secondlook.test"

// Clients of the matrix's own token issuer.
const (
	ehrA, ehrB   = "matrix-ehr-a", "matrix-ehr-b"
	provA, provB = "matrix-provider-a", "matrix-provider-b"
)

func newMatrixEnv(t *testing.T) *matrixEnv {
	t.Helper()
	ctx := context.Background()
	e := &matrixEnv{issuer: callertest.NewIssuer(t), untrusted: callertest.NewIssuer(t), ids: map[string]string{}}
	sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	d, err := Start(sctx, Options{Addr: "127.0.0.1:0", SandboxAddr: "127.0.0.1:0", RedisURL: os.Getenv("REDIS_URL"),
		Callers: []caller.Issuer{{URL: e.issuer.URL, Audience: matrixAudience, Clients: []caller.Client{
			{ID: ehrA, Name: "EHR A", Kind: caller.EHR}, {ID: ehrB, Name: "EHR B", Kind: caller.EHR},
			{ID: provA, Name: "Provider A", Kind: caller.Provider}, {ID: provB, Name: "Provider B", Kind: caller.Provider},
		}}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	e.d = d

	create := func(client, provider string) string {
		body := `{"sources":[{"source":"hospital","patient":"` + Patient + `"}],"provider":"` + provider + `","question":"Is surgery indicated?"}`
		req, _ := http.NewRequest(http.MethodPost, d.GatewayURL+"/api/v1/reviews", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+e.issuer.Token(t, client, matrixAudience, nil))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var r struct{ ID string }
		if err := json.NewDecoder(resp.Body).Decode(&r); err != nil || resp.StatusCode != http.StatusCreated {
			t.Fatalf("create a review as %s: %d %v", client, resp.StatusCode, err)
		}
		return r.ID
	}
	// own: created by ehr, shared with provider, consented in the patient's browser, assembled.
	e.ids["own"] = create(ehrA, provA)
	b := NewBrowser()
	consentURL := d.GatewayURL + "/consent/" + e.ids["own"]
	if err := b.Get(ctx, consentURL); err != nil {
		t.Fatal(err)
	}
	if err := b.Follow(ctx, "authorize-hospital"); err != nil {
		t.Fatal(err)
	}
	if err := b.Submit(ctx, "approve", map[string][]string{"patient": {Patient}}); err != nil {
		t.Fatalf("approve: %v", err)
	}
	// other: created by other-ehr, shared with other-provider, ready (set up in the store: its consent is not what
	// the matrix is about).
	e.ids["other"] = create(ehrB, provB)
	ready(t, d.store, e.ids["other"], provB)
	// pending: awaiting the patient's consent.
	e.ids["pending"] = create(ehrA, provA)
	// withdrawn, and expired (its consent period over, whether or not the sweeper has marked it yet).
	e.ids["withdrawn"] = create(ehrA, provA)
	if _, err := d.store.MoveReview(ctx, e.ids["withdrawn"], []review.State{review.AwaitingConsent}, review.Withdrawn, store.WithdrawnByPatient); err != nil {
		t.Fatal(err)
	}
	x, _ := review.New(ehrA, review.Request{Sources: []review.SourceRequest{{Source: "hospital"}}, Provider: provA, Question: "q"},
		time.Now().Add(-2*time.Hour), time.Hour)
	if err := d.store.CreateReview(ctx, x); err != nil {
		t.Fatal(err)
	}
	e.ids["expired"] = x.ID
	e.ids["none"], _ = review.NewID()

	// A clinician's EHR launch, up to the form: its draft belongs to the clinician's browser.
	clinician := NewBrowser()
	launch := d.sandbox.Site("hospital").NewEHRLaunch(Patient)
	if err := clinician.Get(ctx, d.GatewayURL+"/launch?"+url.Values{"iss": {d.SandboxURL + "/hospital/fhir"}, "launch": {launch}}.Encode()); err != nil {
		t.Fatal(err)
	}
	if err := clinician.Submit(ctx, "approve", nil); err != nil {
		t.Fatal(err)
	}
	action := find(clinician.Page, func(n *html.Node) bool { return n.Data == "form" && strings.HasPrefix(attr(n, "action"), "/launch/") })
	if action == nil {
		t.Fatal("no EHR launch form")
	}
	e.draft = strings.TrimPrefix(attr(action, "action"), "/launch/")

	// Wait for own to be assembled.
	for deadline := time.Now().Add(2 * time.Minute); ; {
		r, err := d.store.GetReview(ctx, e.ids["own"])
		if err != nil {
			t.Fatal(err)
		}
		if r.State == review.Ready {
			break
		}
		if r.State.Final() || time.Now().After(deadline) {
			t.Fatalf("own review: %s %s", r.State, r.Reason)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Nothing left in flight: the expired review marked as the sweeper would, the assembly queue drained.
	if _, err := d.store.ExpireDue(ctx, time.Now()); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(time.Minute); ; {
		pending, delayed, err := d.store.QueueDepth(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if pending == 0 && delayed == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("assembly queue not drained: %d pending, %d delayed", pending, delayed)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The patient's browser: its session cookie, and the withdrawal form's token on own's consent page.
	if err := b.Get(ctx, consentURL); err != nil {
		t.Fatal(err)
	}
	if tokens := b.Options("csrf"); len(tokens) == 1 {
		e.csrf = tokens[0]
	} else {
		t.Fatalf("withdrawal tokens on the consent page: %v", tokens)
	}
	gw, _ := url.Parse(d.GatewayURL)
	for _, c := range b.client.Jar.Cookies(gw) {
		if c.Name == "secondlook" {
			e.cookie = c.Value
		}
	}
	if e.cookie == "" {
		t.Fatal("no session cookie in the patient's browser")
	}
	e.owned = map[string][]string{
		"patient":   {e.ids["own"]},
		"ehr":       {e.ids["own"], e.ids["pending"], e.ids["withdrawn"], e.ids["expired"]},
		"provider":  {e.ids["own"], e.ids["pending"], e.ids["withdrawn"], e.ids["expired"]},
		"other-ehr": {e.ids["other"]}, "other-provider": {e.ids["other"]},
	}
	return e
}

// ready moves a review to ready with a packet, as assembly would leave it.
func ready(t *testing.T, st *store.Store, id, provider string) {
	t.Helper()
	ctx := context.Background()
	for _, step := range [][2]review.State{{review.AwaitingConsent, review.Consented}, {review.Consented, review.Assembling}, {review.Assembling, review.Ready}} {
		if _, err := st.MoveReview(ctx, id, []review.State{step[0]}, step[1], ""); err != nil {
			t.Fatal(err)
		}
	}
	bundle := []byte(`{"resourceType":"Bundle","type":"document","entry":[{"resource":{"resourceType":"Composition"}}],"signature":{"sigFormat":"application/jose"}}`)
	if _, err := st.SavePacket(ctx, store.StoredPacket{ID: "p-" + id, ReviewID: id, Provider: provider, ETag: "e1", Created: time.Now(),
		Report: []byte(`{"profile":"safe-harbor"}`)}, bundle, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
}

// token returns the bearer token a caller kind presents to an operation requiring scheme ("" for none): its own
// for the registered clients, and for the broken kinds a token of the client the operation is for, broken one way.
func (e *matrixEnv) token(t *testing.T, kind, scheme string) string {
	t.Helper()
	client := ehrA
	if scheme == "provider" {
		client = provA
	}
	switch kind {
	case "anonymous", "patient":
		return ""
	case "ehr":
		return e.issuer.Token(t, ehrA, matrixAudience, nil)
	case "other-ehr":
		return e.issuer.Token(t, ehrB, matrixAudience, nil)
	case "provider":
		return e.issuer.Token(t, provA, matrixAudience, nil)
	case "other-provider":
		return e.issuer.Token(t, provB, matrixAudience, nil)
	case "expired":
		return e.issuer.Token(t, client, matrixAudience, func(c *callertest.Claims) {
			c.IssuedAt, c.Expiry = jwtDate(-20*time.Minute), jwtDate(-10*time.Minute)
		})
	case "bad-signature":
		parts := strings.Split(e.issuer.Token(t, client, matrixAudience, nil), ".")
		sig := []byte(parts[2])
		sig[10] = map[bool]byte{true: 'B', false: 'A'}[sig[10] == 'A']
		return parts[0] + "." + parts[1] + "." + string(sig)
	case "alg-none":
		parts := strings.Split(e.issuer.Token(t, client, matrixAudience, nil), ".")
		return base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + parts[1] + "."
	case "edited-payload":
		// The client's own token, claiming to be another client of the same kind.
		parts := strings.Split(e.issuer.Token(t, client, matrixAudience, nil), ".")
		p, _ := base64.RawURLEncoding.DecodeString(parts[1])
		other := map[string]string{ehrA: ehrB, provA: provB}[client]
		parts[1] = base64.RawURLEncoding.EncodeToString(bytes.ReplaceAll(p, []byte(client), []byte(other)))
		return strings.Join(parts, ".")
	case "wrong-audience":
		return e.issuer.Token(t, client, "https://elsewhere.test", nil)
	case "untrusted-issuer":
		return e.untrusted.Token(t, client, matrixAudience, nil)
	}
	t.Fatalf("unknown caller kind %q", kind)
	return ""
}

// request builds the request of one cell.
func (e *matrixEnv) request(t *testing.T, o specOperation, resource, kind string) (*http.Request, string) {
	t.Helper()
	path := o.path
	for _, p := range o.params {
		var v string
		switch p {
		case "id", "review":
			v = e.ids[resource]
		case "draft":
			v = map[string]string{"other": e.draft, "none": e.ids["none"]}[resource]
		case "source":
			v = "hospital"
			if resource == "none" && !slices.Contains(o.params, "review") {
				v = "nowhere"
			}
		case "file":
			v = map[string]string{"-": "app.css", "none": "missing.css"}[resource]
		default:
			t.Fatalf("%s: the matrix does not know how to fill {%s}; teach request()", o.name(), p)
		}
		path = strings.Replace(path, "{"+p+"}", v, 1)
	}
	var body io.Reader
	ctype := ""
	switch o.op.OperationID {
	case "createReview":
		body = strings.NewReader(`{"sources":[{"source":"hospital"}],"provider":"` + provA + `","question":"Is surgery indicated?"}`)
		ctype = "application/json"
	case "withdrawConsent":
		// Everyone presents the patient's withdrawal token for own: without the patient's session it is worthless.
		body, ctype = strings.NewReader(url.Values{"csrf": {e.csrf}}.Encode()), "application/x-www-form-urlencoded"
	case "submitEHRLaunch":
		body = strings.NewReader(url.Values{"csrf": {e.csrf}, "provider": {provA}, "question": {"Is surgery indicated?"}}.Encode())
		ctype = "application/x-www-form-urlencoded"
	case "ehrLaunch":
		path += "?" + url.Values{"iss": {e.d.SandboxURL + "/hospital/fhir"}, "launch": {"matrix-launch"}}.Encode()
	case "authCallback":
		path += "?" + url.Values{"code": {"matrix-code"}, "state": {"matrix-state"}}.Encode()
	}
	req, err := http.NewRequest(o.method, e.d.GatewayURL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	tok := e.token(t, kind, o.scheme())
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	if kind == "patient" {
		// A browser: its session cookie, and the Accept of a page (or of a stylesheet).
		req.Header.Set("Cookie", "secondlook="+e.cookie)
		req.Header.Set("Accept", "text/html,application/xhtml+xml,*/*;q=0.8")
		if o.op.OperationID == "static" {
			req.Header.Set("Accept", "text/css,*/*;q=0.1")
		}
	}
	return req, tok
}

// TestAuthorizationMatrix sends every cell of the matrix.
func TestAuthorizationMatrix(t *testing.T) {
	_, router, ops := loadSpec(t)
	rows := readMatrix(t)
	checkCoverage(t, rows, ops)
	if t.Failed() {
		t.FailNow()
	}
	openapi3filter.RegisterBodyDecoder("text/html", openapi3filter.PlainBodyDecoder)
	openapi3filter.RegisterBodyDecoder("text/css", openapi3filter.PlainBodyDecoder)
	e := newMatrixEnv(t)
	hc := &http.Client{Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	t.Run("odd path parameters", func(t *testing.T) { e.oddParameters(t, ops, hc) })

	type cell struct {
		row  matrixRow
		kind string
	}
	var cells, last []cell
	for _, r := range rows {
		for _, kind := range callerKinds {
			c := cell{r, kind}
			// A successful withdrawal ends the review the other cells use: it goes last.
			if ops[r.op].op.OperationID == "withdrawConsent" && r.want[kind] == http.StatusSeeOther {
				last = append(last, c)
			} else {
				cells = append(cells, c)
			}
		}
	}
	got := map[string]map[string]int{}
	knownIDs := append(slices.Sorted(maps.Values(e.ids)), e.draft)
	for _, c := range append(cells, last...) {
		o := ops[c.row.op]
		name := fmt.Sprintf("%s [%s] as %s", c.row.op, c.row.resource, c.kind)
		req, tok := e.request(t, o, c.row.resource, c.kind)
		reqPath := req.URL.Path
		var reqBody []byte
		if req.Body != nil {
			reqBody, _ = io.ReadAll(req.Body)
			req.Body = io.NopCloser(bytes.NewReader(reqBody))
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		key := c.row.op + " " + c.row.resource
		if got[key] == nil {
			got[key] = map[string]int{}
		}
		got[key][c.kind] = resp.StatusCode
		if resp.StatusCode != c.row.want[c.kind] {
			t.Errorf("%s: %d, want %d (%s:%d): %.200s", name, resp.StatusCode, c.row.want[c.kind], matrixDoc, c.row.line, body)
		}
		// What every answer must be, whatever its status.
		if resp.StatusCode >= 500 {
			t.Errorf("%s: a server error", name)
		}
		if resp.StatusCode == http.StatusUnauthorized && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer ") {
			t.Errorf("%s: 401 without WWW-Authenticate: Bearer", name)
		}
		ct := resp.Header.Get("Content-Type")
		if resp.StatusCode >= 400 && o.scheme() != "" && ct != "application/problem+json" {
			t.Errorf("%s: %d as %q, want application/problem+json", name, resp.StatusCode, ct)
		}
		if loc := resp.Header.Get("Location"); loc != "" && !strings.HasPrefix(loc, "/") && !strings.HasPrefix(loc, e.d.SandboxURL+"/") {
			t.Errorf("%s: redirects off the gateway and its sources: %s", name, loc)
		}
		secrets := []string{e.cookie}
		if !(strings.HasSuffix(c.kind, "ehr") && resp.StatusCode < 300) {
			secrets = append(secrets, Patient) // only the EHR that named the patient sees the id it gave
		}
		if tok != "" {
			secrets = append(secrets, tok)
		}
		if !(c.kind == "patient" && strings.HasSuffix(reqPath, "/consent/"+e.ids["own"])) {
			secrets = append(secrets, e.csrf) // only the patient's own page carries it
		}
		for _, id := range knownIDs {
			if !strings.Contains(reqPath, id) && !slices.Contains(e.owned[c.kind], id) {
				secrets = append(secrets, id)
			}
		}
		var headers strings.Builder
		for k, vs := range resp.Header {
			if k != "Set-Cookie" {
				fmt.Fprintf(&headers, "%s: %s\n", k, strings.Join(vs, ", "))
			}
		}
		for _, s := range secrets {
			if strings.Contains(string(body), s) || strings.Contains(headers.String(), s) {
				t.Errorf("%s: the answer reveals %.16s… (a token, the session, the patient, or another resource's id)", name, s)
			}
		}
		validateAgainstSpec(t, name, router, req, reqBody, resp, body)
	}
	if r, err := e.d.store.GetReview(context.Background(), e.ids["own"]); err != nil || r.State != review.Withdrawn {
		t.Errorf("the patient's withdrawal did not take: %v %v", r, err)
	}
	if t.Failed() {
		t.Logf("observed:\n%s", formatMatrix(rows, got))
	}
}

// validateAgainstSpec checks a request and its answer against openapi.yaml: the status must be one the operation
// declares, with the declared content type and schema.
func validateAgainstSpec(t *testing.T, name string, router routers.Router, req *http.Request, reqBody []byte, resp *http.Response, body []byte) {
	t.Helper()
	req.Body = io.NopCloser(bytes.NewReader(reqBody))
	route, params, err := router.FindRoute(req)
	if err != nil {
		t.Errorf("%s: not in openapi.yaml: %v", name, err)
		return
	}
	opts := &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, IncludeResponseStatus: true}
	in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route, Options: opts}
	if err := openapi3filter.ValidateRequest(context.Background(), in); err != nil {
		t.Errorf("%s: the request does not match openapi.yaml: %v", name, err)
	}
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: resp.StatusCode, Header: resp.Header,
		Body: io.NopCloser(bytes.NewReader(body)), Options: opts}
	if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
		t.Errorf("%s: the %d answer does not match openapi.yaml: %v", name, resp.StatusCode, err)
	}
}

// formatMatrix writes observed statuses as the table's rows, for comparing with the document.
func formatMatrix(rows []matrixRow, got map[string]map[string]int) string {
	var b strings.Builder
	for _, r := range rows {
		fmt.Fprintf(&b, "| `%s` | %s |", r.op, r.resource)
		for _, k := range callerKinds {
			fmt.Fprintf(&b, " %d |", got[r.op+" "+r.resource][k])
		}
		b.WriteString("\n")
	}
	return b.String()
}

func jwtDate(d time.Duration) *jwt.NumericDate { return jwt.NewNumericDate(time.Now().Add(d)) }

// oddParameters sends odd values in every path parameter of every operation (the others filled with good ones): a
// path traversal, encoded or not, a NUL, an over-long value, non-ASCII, invalid UTF-8, an encoded CR LF, Redis hash
// tag braces. Each must be refused with a 4xx that echoes nothing, never a 5xx, never followed.
func (e *matrixEnv) oddParameters(t *testing.T, ops map[string]specOperation, hc *http.Client) {
	const marker = "zq9MARKERzq9"
	before, err := storetest.Snapshot(context.Background(), e.d.store)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		after, err := storetest.Snapshot(context.Background(), e.d.store)
		if err != nil {
			t.Fatal(err)
		}
		if d := storetest.Changes(before, after); len(d) > 0 {
			t.Errorf("refused requests stored something:\n%s", strings.Join(d, "\n"))
		}
	}()
	// Bodies over the server's limit, on the patient's forms, with the patient's session and valid token: 413 before
	// anything is read.
	pad := strings.Repeat(marker, 200<<10)
	for _, path := range []string{"/consent/" + e.ids["own"] + "/withdraw", "/launch/" + e.draft} {
		req, _ := http.NewRequest(http.MethodPost, e.d.GatewayURL+path, strings.NewReader("pad="+pad+"&csrf="+url.QueryEscape(e.csrf)))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Cookie", "secondlook="+e.cookie)
		req.Header.Set("Accept", "text/html")
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge || strings.Contains(string(body), marker) {
			t.Errorf("POST %s with a %d-byte body: %d", path, len(pad), resp.StatusCode)
		}
	}
	odd := []string{
		"..%2f..%2fetc%2fpasswd" + marker, "../../etc/passwd" + marker, "%2e%2e", "%00" + marker, strings.Repeat("a", 300),
		"r%C3%A9view%E2%80%AE" + marker, "%ff%fe" + marker, "%0d%0aX-Injected:%20" + marker, "%7B" + marker + "%7D",
		strings.ToUpper(e.ids["pending"]), e.ids["pending"] + "%20",
	}
	names := slices.Sorted(maps.Keys(ops))
	for _, name := range names {
		o := ops[name]
		for _, attacked := range o.params {
			for _, v := range odd {
				path := o.path
				for _, p := range o.params {
					good := map[string]string{"id": e.ids["pending"], "review": e.ids["pending"], "source": "hospital", "draft": e.draft, "file": "app.css"}[p]
					if p == attacked {
						good = v
					}
					path = strings.Replace(path, "{"+p+"}", good, 1)
				}
				req, _ := e.request(t, o, "pending", "patient")
				u, err := url.Parse(e.d.GatewayURL + path)
				if err != nil {
					t.Fatal(err)
				}
				u.RawQuery = req.URL.RawQuery
				req.URL = u
				if s := o.scheme(); s != "" {
					req.Header.Set("Authorization", "Bearer "+e.token(t, s, s))
				}
				resp, err := hc.Do(req)
				if err != nil {
					t.Fatalf("%s with {%s}=%q: %v", name, attacked, v, err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				label := fmt.Sprintf("%s with {%s}=%.40q", name, attacked, v)
				if resp.StatusCode < 400 || resp.StatusCode >= 500 {
					t.Errorf("%s: %d, want a 4xx: %.200s", label, resp.StatusCode, body)
				}
				if o.scheme() != "" && resp.Header.Get("Content-Type") != "application/problem+json" {
					t.Errorf("%s: %q, want application/problem+json", label, resp.Header.Get("Content-Type"))
				}
				for _, s := range []string{marker, "passwd", "X-Injected", "\x00"} {
					if strings.Contains(string(body), s) {
						t.Errorf("%s: the answer echoes %q", label, s)
					}
				}
				if resp.Header.Get("X-Injected") != "" || resp.Header.Get("Location") != "" {
					t.Errorf("%s: answered with headers %v", label, resp.Header)
				}
			}
		}
	}
}
