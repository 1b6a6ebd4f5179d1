package api

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

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
			Question      string `json:"question"`
			Provider      string `json:"provider"`
			ResourceTypes []string
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
