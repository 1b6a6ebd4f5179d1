package api

import (
	"bytes"
	"encoding/json"
	"html"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"secondlook/auth"
	"secondlook/sandbox"
	"secondlook/seal"
	"secondlook/store"
	"secondlook/store/storetest"
)

// FuzzReviewRequest posts a fuzzed body with a fuzzed Content-Type to POST /api/v1/reviews as a registered EHR,
// through the whole server (caller verification, body limit, strict decoding, validation, the store), in process.
// Properties: the answer is 201 or a problem (400, 413, 415, 422), never a server error; the clinical question
// (PHI) is never echoed in the answer or a log line; a created review reads back with the provider, sources and
// types that were asked for.
func FuzzReviewRequest(f *testing.F) {
	client, mr, err := store.Embedded()
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = client.Close(); mr.Close() })
	e := newAPIEnvWith(f, store.New(client, storetest.UniquePrefix()))
	h := e.srv.Config.Handler
	f.Add([]byte(validReview), "application/json")
	f.Add([]byte(`{"sources":[{"source":"lab"}],"provider":"cardio","question":"Todd315 Stamm704: is the fracture healed?","lookBackDays":0}`), "application/json; charset=utf-8")
	f.Add([]byte(`{"sources":[{"source":"hospital","patient":"a b"}],"provider":"nobody","resourceTypes":["Patient"],"lookBackDays":-1,"question":""}`), "application/json")
	f.Add([]byte(`{"sources":[],"provider":"onco","question":"Q","Question":"Lafleur 819-555-0163"}`), "application/json")
	f.Add([]byte(`{"sources":[{"source":"lab"}],"provider":"onco","question":"x"} {}`), "application/json")
	f.Add([]byte(`<review/>`), "application/xml")
	var token string
	var minted time.Time
	f.Fuzz(func(t *testing.T, body []byte, contentType string) {
		if time.Since(minted) > time.Minute {
			token, minted = e.issuer.Token(t, "ehr-1", audience, nil), time.Now()
		}
		req := httptest.NewRequest(http.MethodPost, "/api/v1/reviews", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", contentType)
		rec := httptest.NewRecorder()
		logStart := e.logs.Len()
		h.ServeHTTP(rec, req)
		logged := e.logs.String()[logStart:]

		var asked struct {
			Question      string   `json:"question"`
			Provider      string   `json:"provider"`
			ResourceTypes []string `json:"resourceTypes"`
			Sources       []struct {
				Source  string `json:"source"`
				Patient string `json:"patient"`
			} `json:"sources"`
		}
		_ = json.Unmarshal(body, &asked)
		if q := asked.Question; len(q) >= 12 {
			if strings.Contains(rec.Body.String(), q) || strings.Contains(logged, q) {
				t.Fatal("the clinical question is echoed in the answer or a log line")
			}
		}
		switch rec.Code {
		case http.StatusCreated:
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType, http.StatusUnprocessableEntity:
			if ct := rec.Header().Get("Content-Type"); ct != "application/problem+json" {
				t.Fatalf("status %d with Content-Type %q", rec.Code, ct)
			}
			var p Problem
			if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil || p.Status != rec.Code {
				t.Fatalf("status %d with a body that is not its problem: %s", rec.Code, rec.Body.Bytes())
			}
			return
		default:
			t.Fatalf("status %d: %s", rec.Code, rec.Body.Bytes())
		}
		loc := rec.Header().Get("Location")
		get := httptest.NewRequest(http.MethodGet, loc, nil)
		get.Header.Set("Authorization", "Bearer "+token)
		rec = httptest.NewRecorder()
		h.ServeHTTP(rec, get)
		var got reviewView
		if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &got) != nil {
			t.Fatalf("created review %s reads back with status %d", loc, rec.Code)
		}
		if !slices.Equal(got.ResourceTypes, asked.ResourceTypes) {
			t.Fatalf("created review reads back with types %q, asked %q", got.ResourceTypes, asked.ResourceTypes)
		}
		if got.Provider != asked.Provider || len(got.Sources) != len(asked.Sources) {
			t.Fatalf("created review reads back as provider %q with %d sources, asked %q with %d", got.Provider, len(got.Sources), asked.Provider, len(asked.Sources))
		}
		for i, s := range asked.Sources {
			if got.Sources[i].Source != s.Source || got.Sources[i].PatientID != s.Patient {
				t.Fatalf("source %d reads back as %+v", i, got.Sources[i])
			}
		}
	})
}

// FuzzNegotiate picks the page language from a fuzzed ?lang=, lang cookie and Accept-Language header.
// Properties: the result is a supported language; an explicit supported ?lang= wins and is remembered in a cookie
// whose value is that language (nothing else from the request reaches a Set-Cookie header); a supported cookie wins
// over the header; the header's choice is one of its tags with the highest q among the supported ones.
func FuzzNegotiate(f *testing.F) {
	f.Add("", "", "fr-CA,fr;q=0.9,en-US;q=0.8,en;q=0.7")
	f.Add("fr", "", "en")
	f.Add("de", "fr", "en;q=0.1, fr;q=0.05")
	f.Add("", "xx", "*;q=0.5, FR;q=1e9, en;q=NaN")
	f.Add("en\r\nSet-Cookie: x=y", "en; Path=/", "fr;q=-1,en;q=0")
	e := echo.New()
	f.Fuzz(func(t *testing.T, langQuery, cookie, acceptLanguage string) {
		req := httptest.NewRequest(http.MethodGet, "/consent/x?lang="+url.QueryEscape(langQuery), nil)
		if cookie != "" {
			req.Header.Set("Cookie", langCookie+"="+cookie)
		}
		req.Header.Set("Accept-Language", acceptLanguage)
		rec := httptest.NewRecorder()
		l := negotiate(e.NewContext(req, rec))
		if !slices.Contains(languages, l.Lang) {
			t.Fatalf("negotiated %q", l.Lang)
		}
		setCookie := rec.Header().Values("Set-Cookie")
		if supported(langQuery) {
			if l.Lang != langQuery || len(setCookie) != 1 || !strings.HasPrefix(setCookie[0], langCookie+"="+langQuery+";") {
				t.Fatalf("?lang=%s gave %q and Set-Cookie %q", langQuery, l.Lang, setCookie)
			}
			return
		}
		if len(setCookie) != 0 {
			t.Fatalf("Set-Cookie %q without an explicit choice", setCookie)
		}
		if c, err := req.Cookie(langCookie); err == nil && supported(c.Value) {
			if l.Lang != c.Value {
				t.Fatalf("cookie %q gave %q", c.Value, l.Lang)
			}
			return
		}
		if l.Lang != languages[0] && !strings.Contains(strings.ToLower(acceptLanguage), l.Lang) {
			t.Fatalf("Accept-Language %q gave %q, which it does not name", acceptLanguage, l.Lang)
		}
	})
}

// FuzzLaunch sends GET /launch?iss=...&launch=... with fuzzed values, as an EHR (or anyone) can, to a gateway whose
// one source is a sandbox site with its SMART authorization server, in process. Properties: the answer is a
// redirect to that source's authorization endpoint, carrying the launch value unchanged, only when iss is the
// source's FHIR base (a trailing slash aside) and launch is 1 to 2048 bytes; otherwise a 400 page that reflects
// neither value (raw or HTML-escaped) and a log that carries neither; never a server error.
func FuzzLaunch(f *testing.F) {
	todd, err := os.ReadFile("../testdata/synthea/Todd315_Stamm704_0ce18c7d-fd78-46d9-81b5-8bed231c337a.json")
	if err != nil {
		f.Fatal(err)
	}
	const public = "http://127.0.0.1:9"
	sb, err := sandbox.New(sandbox.Options{Sites: []sandbox.SiteOptions{{Name: "hospital", Bundles: [][]byte{todd},
		Auth: &sandbox.AuthOptions{Clients: []sandbox.Client{{ID: "gw", Secret: "s3cret-client-secret",
			RedirectURIs: []string{public + "/auth/callback/hospital"}}}}}}})
	if err != nil {
		f.Fatal(err)
	}
	srv := httptest.NewServer(sb.Handler())
	f.Cleanup(srv.Close)
	base := srv.URL + "/hospital/fhir"
	client, mr, err := store.Embedded()
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = client.Close(); mr.Close() })
	st := store.New(client, storetest.UniquePrefix())
	keys, err := seal.NewKeyring(map[string][]byte{"k1": bytes.Repeat([]byte{7}, 32)}, "k1")
	if err != nil {
		f.Fatal(err)
	}
	ac, err := auth.New(auth.Config{PublicURL: public, Keys: keys, HTTPClient: srv.Client(), Sources: []auth.Source{{
		ID: "hospital", FHIRBaseURL: base, ClientID: "gw", Method: auth.MethodClientSecretBasic, Secret: []byte("s3cret-client-secret"),
	}}}, st, st)
	if err != nil {
		f.Fatal(err)
	}
	conf, err := ac.Discover(f.Context(), "hospital")
	if err != nil {
		f.Fatal(err)
	}
	var logs bytes.Buffer
	s, err := New(Config{Logger: slog.New(slog.NewJSONHandler(&logs, nil)), Consent: &ConsentConfig{
		Reviews: st, Consents: st, Auth: ac, Launch: ac, LaunchStore: st, CSRFKey: bytes.Repeat([]byte{9}, 32),
		Sources: map[string]SourceInfo{"hospital": {Name: "St. Mary's"}}, PublicURL: public, Types: []string{"DiagnosticReport"},
	}})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(base, "launch-abc123")
	f.Add(base+"/", `"><script>alert(1)</script>`)
	f.Add(srv.URL+"/other/fhir", "launch-abc123")
	f.Add("https://evil.example/fhir", "<img src=x onerror=alert(1)>")
	f.Add(base+"/../other", "x")
	f.Add(base, "")
	f.Add(base, strings.Repeat("L", 2049))
	f.Fuzz(func(t *testing.T, iss, launch string) {
		q := url.Values{"iss": {iss}, "launch": {launch}}
		req := httptest.NewRequest(http.MethodGet, "/launch?"+q.Encode(), nil)
		rec := httptest.NewRecorder()
		logStart := logs.Len()
		s.ServeHTTP(rec, req)
		logged := logs.String()[logStart:]
		trusted := iss != "" && strings.TrimRight(iss, "/") == base && launch != "" && len(launch) <= 2048
		for _, v := range []string{iss, launch} {
			if len(v) >= 8 && strings.Contains(logged, v) {
				t.Fatalf("a log line carries the fuzzed value %q", v)
			}
		}
		if rec.Code == http.StatusFound {
			if !trusted {
				t.Fatalf("launch from iss %q (launch of %d bytes) redirected", iss, len(launch))
			}
			to, err := url.Parse(rec.Header().Get("Location"))
			if err != nil || to.Scheme+"://"+to.Host+to.Path != conf.AuthorizationEndpoint {
				t.Fatalf("redirected to %q", rec.Header().Get("Location"))
			}
			if to.Query().Get("launch") != launch || to.Query().Get("aud") != base {
				t.Fatalf("authorization request carries launch %q aud %q", to.Query().Get("launch"), to.Query().Get("aud"))
			}
			return
		}
		if rec.Code != http.StatusBadRequest || trusted {
			t.Fatalf("status %d for iss %q (trusted %v)", rec.Code, iss, trusted)
		}
		page := rec.Body.String()
		for _, v := range []string{iss, launch} {
			if len(v) >= 10 && (strings.Contains(page, v) || strings.Contains(page, html.EscapeString(v))) {
				t.Fatalf("the error page reflects %q", v)
			}
		}
	})
}
