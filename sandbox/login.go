package sandbox

import (
	"crypto/subtle"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/go-json-experiment/json"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// maxLoginForm bounds the sign-in form body.
const maxLoginForm = 64 << 10

// loginCSP allows nothing but the page's own inline style: no scripts, no external assets, no framing.
const loginCSP = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; frame-ancestors 'none'"

var loginPage = template.Must(template.New("login").Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in – {{.Site}} (sandbox)</title>
<style>
body{font-family:system-ui,sans-serif;max-width:36rem;margin:1rem auto;padding:0 1rem;line-height:1.5;color:#111;background:#fff}
fieldset{border:1px solid #555;margin:1rem 0;padding:.5rem 1rem}
label{display:block;padding:.25rem 0}
button{font-size:1rem;padding:.5rem 1.25rem;margin-right:1rem}
button:focus,input:focus{outline:3px solid #1a5fb4;outline-offset:2px}
.note{color:#333;font-size:.9rem}
.error{color:#a00;font-weight:bold}
</style>
</head>
<body>
<main>
<h1>{{.Site}} patient portal (sandbox)</h1>
<p class="note">Synthetic test data only. This is a test authorization server, not a real hospital.</p>
{{if .Error}}<p class="error" role="alert">{{.Error}}</p>{{end}}
<p>The application <strong>{{.ClientID}}</strong> asks to read your health records.</p>
<form method="post" action="{{.Action}}">
<input type="hidden" name="id" value="{{.ID}}">
<input type="hidden" name="csrf" value="{{.CSRF}}">
{{if .LaunchPatient}}
<p>Patient: <strong>{{.LaunchPatient.Label}}</strong></p>
{{else}}
<fieldset>
<legend>Sign in as</legend>
{{range .Patients}}<label for="patient-{{.ID}}"><input type="radio" name="patient" id="patient-{{.ID}}" value="{{.ID}}" required> {{.Label}}</label>
{{end}}</fieldset>
{{end}}
{{if .Types}}<fieldset>
<legend>Share these kinds of records</legend>
{{range .Types}}<label for="type-{{.}}"><input type="checkbox" name="type" id="type-{{.}}" value="{{.}}" checked> {{.}}</label>
{{end}}</fieldset>{{end}}
{{if .Offline}}<p class="note">The application also asks to keep access while you are away (offline access).</p>{{end}}
<button type="submit" name="decision" value="approve" id="approve">Approve</button>
<button type="submit" name="decision" value="deny" id="deny" formnovalidate>Deny</button>
</form>
</main>
</body>
</html>
`))

type loginPatient struct {
	ID, Label string
}

type loginData struct {
	Site, ClientID, Action, ID, CSRF, Error string
	LaunchPatient                           *loginPatient
	Patients                                []loginPatient
	Types                                   []string
	Offline                                 bool
}

// csrfCookie names the cookie that binds a sign-in form to the browser that loaded it (double submit).
func csrfCookie(id string) string { return "sandbox_login_" + id }

// login serves the patient sign-in page: GET shows it, POST takes the decision.
func (a *authServer) login(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", loginCSP)
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		a.loginForm(w, r)
	case http.MethodPost:
		a.loginDecision(w, r)
	default:
		h.Set("Allow", "GET, HEAD, POST")
		loginError(w, http.StatusMethodNotAllowed, "method not allowed")
	}
}

func loginError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(msg + "\n"))
}

func (a *authServer) loginForm(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("id")
	req, err := a.storage.pendingAuthRequest(id)
	if err != nil {
		loginError(w, http.StatusBadRequest, "This sign-in request is unknown or has expired. Start again from the application.")
		return
	}
	http.SetCookie(w, &http.Cookie{ //nolint:gosec // G124: HttpOnly and SameSite set; Secure whenever the sandbox is served over TLS
		Name: csrfCookie(req.id), Value: req.csrf, Path: "/" + a.site.name + "/auth/login",
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteLaxMode, MaxAge: int(authRequestTTL.Seconds()),
	})
	a.renderLogin(w, http.StatusOK, &req, "")
}

func (a *authServer) renderLogin(w http.ResponseWriter, status int, req *authRequest, msg string) {
	d := loginData{
		Site: a.site.name, ClientID: req.clientID, Action: "/" + a.site.name + "/auth/login",
		ID: req.id, CSRF: req.csrf, Error: msg,
		Types:   scopeTypes(req.scopes, a.version),
		Offline: slices.Contains(req.scopes, scopeOffline),
	}
	if req.launchPat != "" {
		d.LaunchPatient = &loginPatient{ID: req.launchPat, Label: a.site.patientLabel(req.launchPat)}
	} else {
		for _, p := range a.site.Patients() {
			d.Patients = append(d.Patients, loginPatient{ID: p, Label: a.site.patientLabel(p)})
		}
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_ = loginPage.Execute(w, d)
}

// loginDecision takes the patient's approve or deny. The form must carry the request's CSRF token, and the
// browser the same token in the cookie set with the form.
func (a *authServer) loginDecision(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxLoginForm)
	if err := r.ParseForm(); err != nil {
		loginError(w, http.StatusBadRequest, "malformed form")
		return
	}
	id := r.PostForm.Get("id")
	csrf := r.PostForm.Get("csrf")
	cookie, err := r.Cookie(csrfCookie(id))
	if id == "" || err != nil || subtle.ConstantTimeCompare([]byte(cookie.Value), []byte(csrf)) != 1 ||
		!a.storage.checkCSRF(id, csrf) {
		loginError(w, http.StatusForbidden, "This form has expired or was not sent from this browser. Start again from the application.")
		return
	}
	req, err := a.storage.pendingAuthRequest(id)
	if err != nil {
		loginError(w, http.StatusBadRequest, "This sign-in request is unknown or has expired. Start again from the application.")
		return
	}
	http.SetCookie(w, &http.Cookie{Name: csrfCookie(id), Value: "", Path: "/" + a.site.name + "/auth/login", MaxAge: -1}) //nolint:gosec // G124: deletes the cookie; it carries nothing
	issuer := a.issuer(r)
	switch r.PostForm.Get("decision") {
	case "deny":
		a.storage.deny(id)
		http.Redirect(w, r, clientRedirect(req.redirectURI, issuer, url.Values{
			"error": {"access_denied"}, "error_description": {"the patient denied access"}, "state": {req.state},
		}), http.StatusSeeOther)
		return
	case "approve":
	default:
		a.renderLogin(w, http.StatusBadRequest, &req, "Choose Approve or Deny.")
		return
	}
	patient := req.launchPat
	if patient == "" {
		patient = r.PostForm.Get("patient")
		if patient == "" || a.site.store.get("Patient", patient) == nil {
			a.renderLogin(w, http.StatusBadRequest, &req, "Choose the patient you are signing in as.")
			return
		}
	}
	requested := scopeTypes(req.scopes, a.version)
	var keep []string
	for _, t := range r.PostForm["type"] {
		if slices.Contains(requested, t) && !slices.Contains(keep, t) {
			keep = append(keep, t)
		}
	}
	granted := narrowScopes(req.scopes, keep, a.version)
	approved, err := a.storage.approve(id, patient, granted)
	if err != nil {
		loginError(w, http.StatusBadRequest, "This sign-in request is unknown or has expired. Start again from the application.")
		return
	}
	payload, err := op.BuildAuthResponseCodeResponsePayload(r.Context(), approved, a.provider)
	if err != nil {
		a.logger.Error("sandbox auth: make code failed") // no detail: the error could carry request content
		loginError(w, http.StatusInternalServerError, "internal error")
		return
	}
	http.Redirect(w, r, clientRedirect(req.redirectURI, issuer, url.Values{
		"code": {payload.Code}, "state": {payload.State},
	}), http.StatusSeeOther)
}

// patientLabel is the name of a Patient as the record gives it (synthetic data), for the sandbox sign-in page.
func (s *Site) patientLabel(id string) string {
	res := s.store.get("Patient", id)
	if res == nil {
		return id
	}
	var p struct {
		Name []humanNameJSON `json:"name"`
	}
	if err := json.Unmarshal(appendResource(nil, res, ""), &p); err != nil || len(p.Name) == 0 {
		return "Patient " + id
	}
	n := p.Name[0]
	if n.Text != "" {
		return n.Text
	}
	parts := append(append(slices.Clone(n.Prefix), n.Given...), n.Family)
	parts = append(parts, n.Suffix...)
	label := strings.Join(strings.Fields(strings.Join(parts, " ")), " ")
	if label == "" {
		return "Patient " + id
	}
	return label
}
