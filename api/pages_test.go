package api

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
)

func TestCatalogComplete(t *testing.T) {
	for _, lang := range languages {
		for key := range catalog["en"] {
			if _, ok := catalog[lang][key]; !ok {
				t.Errorf("%s has no %q", lang, key)
			}
		}
		for key := range catalog[lang] {
			if _, ok := catalog["en"][key]; !ok {
				t.Errorf("%s has %q, English does not", lang, key)
			}
		}
	}
}

func TestNegotiate(t *testing.T) {
	for _, tc := range []struct{ header, cookie, want string }{
		{"", "", "en"},
		{"?lang=fr", "en", "fr"},
		{"fr-CA,fr;q=0.9,en;q=0.8", "", "fr"},
		{"en-US,en;q=0.9,fr;q=0.8", "", "en"},
		{"de-DE,fr;q=0.5", "", "fr"},
		{"fr-CA", "en", "en"},
		{"fr", "xx", "fr"},
	} {
		target, header := "/", tc.header
		if strings.HasPrefix(header, "?") {
			target, header = "/"+header, ""
		}
		req := httptest.NewRequest("GET", target, nil)
		req.Header.Set("Accept-Language", header)
		if tc.cookie != "" {
			req.AddCookie(&http.Cookie{Name: langCookie, Value: tc.cookie}) //nolint:gosec // G124: a request's cookie: the attributes are the server's to set
		}
		c := echo.New().NewContext(req, httptest.NewRecorder())
		if got := negotiate(c).Lang; got != tc.want {
			t.Errorf("Accept-Language %q cookie %q: %s, want %s", tc.header, tc.cookie, got, tc.want)
		}
	}
}

func TestPagesRender(t *testing.T) {
	p, err := loadPages()
	if err != nil {
		t.Fatal(err)
	}
	for _, lang := range languages {
		rec := httptest.NewRecorder()
		c := echo.New().NewContext(httptest.NewRequest("GET", "/", nil), rec)
		view := consentView{
			L: localizer{Lang: lang}, Requester: "St. Mary's <Hospital>", Provider: "Oncology Second Opinions",
			Types: []string{"DiagnosticReport", "Condition"}, Until: time.Date(2026, 12, 26, 0, 0, 0, 0, time.UTC),
			Sources: []sourceView{
				{ID: "hospital", Name: "St. Mary's", Kind: "hospital", State: "granted", NotGranted: []string{"ImagingStudy"}},
				{ID: "province", Name: "Provincial lab", Kind: "provincial", State: "pending", AuthorizeURL: "/consent/x/authorize/province"},
			},
			CanWithdraw: true, WithdrawURL: "/consent/x/withdraw", CSRF: "tok",
		}
		if err := p.render(c, 200, "consent", view); err != nil {
			t.Fatal(err)
		}
		body := rec.Body.String()
		for _, want := range []string{`lang="` + lang + `"`, "St. Mary&#39;s &lt;Hospital&gt;", `id="authorize-province"`, `name="csrf" value="tok"`, `href="/static/app.css"`} {
			if !strings.Contains(body, want) {
				t.Errorf("%s: page lacks %s", lang, want)
			}
		}
		if lang == "fr" && !strings.Contains(body, "26 décembre 2026") {
			t.Errorf("fr: date not localized")
		}
		if strings.Contains(body, "<script") || strings.Contains(body, "style=") {
			t.Errorf("%s: inline script or style breaks the CSP", lang)
		}
	}
}

func TestStaticStylesheet(t *testing.T) {
	srv, _ := newTestServer(t, nil, nil)
	resp, err := http.Get(srv.URL + "/static/app.css")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/css") || len(b) < 100 {
		t.Errorf("status %d type %q len %d", resp.StatusCode, resp.Header.Get("Content-Type"), len(b))
	}
	resp, err = http.Get(srv.URL + "/static/../server.go")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode == 200 {
		t.Error("path traversal out of the static tree")
	}
}
