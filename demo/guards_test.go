package demo

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"secondlook/internal/syncbuf"
	"secondlook/store/storetest"
	"strings"
	"testing"
	"time"
)

type syncBuffer = syncbuf.Buffer

func startDemo(t *testing.T) (*Demo, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	d, err := Start(ctx, Options{Addr: "127.0.0.1:0", SandboxAddr: "127.0.0.1:0", RedisURL: os.Getenv("REDIS_URL"),
		Logger: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	return d, logs
}

func isCallback(u *url.URL) bool { return strings.HasPrefix(u.Path, "/auth/callback/") }

// approveAt signs in at src as patient and stops before the callback reaches the gateway.
func approveAt(t *testing.T, d *Demo, b *Browser, src, patient string) *url.URL {
	t.Helper()
	return approveVia(t, d, b, "authorize-"+src, patient)
}

// approveVia follows the consent page's link (by id) to a source, signs in there as patient, and stops before the
// callback reaches the gateway.
func approveVia(t *testing.T, d *Demo, b *Browser, link, patient string) *url.URL {
	t.Helper()
	ctx := context.Background()
	b.StopAt(isCallback)
	if err := b.Get(ctx, d.ConsentURL); err != nil {
		t.Fatal(err)
	}
	if err := b.Follow(ctx, link); err != nil {
		t.Fatal(err)
	}
	if err := b.Submit(ctx, "approve", map[string][]string{"patient": {patient}}); err != nil {
		t.Fatal(err)
	}
	if b.Stopped == nil {
		t.Fatal("no callback")
	}
	return b.Stopped
}

// signIn follows the consent page's link (by id) to a source, signs in there as patient and brings the callback
// back to the gateway in b; it returns the callback's error (b.Status has its status).
func signIn(t *testing.T, d *Demo, b *Browser, link, patient string) error {
	t.Helper()
	cb := approveVia(t, d, b, link, patient)
	b.StopAt(func(*url.URL) bool { return false })
	return b.Get(context.Background(), cb.String())
}

// postForgedWithdraw posts a withdrawal from b with a form token valid for b's own session, and returns the status
// and the page.
func postForgedWithdraw(t *testing.T, d *Demo, b *Browser) (int, string) {
	t.Helper()
	resp, err := b.client.PostForm(d.ConsentURL+"/withdraw", url.Values{"csrf": {forgeWithdrawToken(t, d, b)}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func consents(t *testing.T, d *Demo) int {
	t.Helper()
	recs, err := d.store.Consents(context.Background(), d.ReviewID)
	if err != nil {
		t.Fatal(err)
	}
	return len(recs)
}

// Each test here fails when its guard is taken out of the gateway.
func TestConsentGuards(t *testing.T) {
	ctx := context.Background()

	t.Run("callback with another browser's cookie", func(t *testing.T) {
		d, _ := startDemo(t)
		cb := approveAt(t, d, NewBrowser(), "hospital", Patient)
		other := NewBrowser()
		_ = other.Get(ctx, d.ConsentURL) // has its own session cookie
		if err := other.Get(ctx, cb.String()); err == nil || other.Status != http.StatusBadRequest {
			t.Errorf("callback in another browser: status %d", other.Status)
		}
		if n := consents(t, d); n != 0 {
			t.Errorf("%d consents recorded", n)
		}
	})

	t.Run("replayed state", func(t *testing.T) {
		d, _ := startDemo(t)
		b := NewBrowser()
		cb := approveAt(t, d, b, "hospital", Patient)
		b.StopAt(func(*url.URL) bool { return false })
		if err := b.Get(ctx, cb.String()); err != nil {
			t.Fatalf("first callback: %v", err)
		}
		if err := b.Get(ctx, cb.String()); err == nil || b.Status != http.StatusBadRequest {
			t.Errorf("replayed callback: status %d", b.Status)
		}
		if n := consents(t, d); n != 1 {
			t.Errorf("%d consents, want the one", n)
		}
	})

	t.Run("patient other than the review's", func(t *testing.T) {
		d, _ := startDemo(t)
		b := NewBrowser()
		const antonia = "fe07e69a-4d6d-4e11-a675-de69f62de5f3"
		if err := signIn(t, d, b, "authorize-hospital", antonia); err == nil || b.Status != http.StatusForbidden {
			t.Errorf("another patient: status %d", b.Status)
		}
		if n := consents(t, d); n != 0 {
			t.Errorf("%d consents recorded for the wrong patient", n)
		}
		if _, err := d.store.LoadGrant(ctx, d.ReviewID+"/hospital"); err == nil {
			t.Error("the wrong patient's grant was kept")
		}
	})

	t.Run("withdrawal needs the CSRF token of this browser", func(t *testing.T) {
		d, _ := startDemo(t)
		b := NewBrowser()
		if err := signIn(t, d, b, "authorize-hospital", Patient); err != nil {
			t.Fatal(err)
		}
		// No token, a forged one, and a valid one presented by another browser (cross-site POST).
		for name, set := range map[string]map[string][]string{"missing": {"csrf": nil}, "forged": {"csrf": {"AAAA"}}} {
			if err := b.Submit(ctx, "withdraw", set); err == nil || b.Status != http.StatusForbidden {
				t.Errorf("%s token: status %d", name, b.Status)
			}
			_ = b.Get(ctx, d.ConsentURL)
		}
		token := b.Options("csrf")
		other := NewBrowser()
		_ = other.Get(ctx, d.ConsentURL)
		resp, err := other.client.PostForm(d.ConsentURL+"/withdraw", url.Values{"csrf": token})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("another browser with this browser's token: %d", resp.StatusCode)
		}
		r, _ := d.store.GetReview(ctx, d.ReviewID)
		if r.State == "withdrawn" {
			t.Fatal("withdrawn without a valid CSRF token")
		}
		if err := b.Submit(ctx, "withdraw", nil); err != nil {
			t.Fatalf("valid withdrawal: %v", err)
		}
		r, _ = d.store.GetReview(ctx, d.ReviewID)
		if r.State != "withdrawn" {
			t.Errorf("state %s after withdrawal", r.State)
		}
		if _, err := d.store.LoadGrant(ctx, d.ReviewID+"/hospital"); err == nil {
			t.Error("the grant survived withdrawal")
		}
	})

	t.Run("withdrawal needs a browser that signed in as the patient", func(t *testing.T) {
		d, _ := startDemo(t)
		b := NewBrowser()
		if err := signIn(t, d, b, "authorize-hospital", Patient); err != nil {
			t.Fatal(err)
		}
		// A browser that only holds the review's link (an EHR user, someone who read it in a log) is offered no
		// withdrawal form, and is refused even with a form token valid for its own session.
		other := NewBrowser()
		if err := other.Get(ctx, d.ConsentURL); err != nil {
			t.Fatal(err)
		}
		if tokens := other.Options("csrf"); len(tokens) != 0 {
			t.Errorf("a browser that never signed in was offered the withdrawal form")
		}
		if status, body := postForgedWithdraw(t, d, other); status != http.StatusForbidden || !strings.Contains(body, "first sign in") {
			t.Errorf("withdrawal by a browser that never signed in: %d (refused by the sign-in check, not the form token?)", status)
		}
		if r, _ := d.store.GetReview(ctx, d.ReviewID); r.State == "withdrawn" {
			t.Fatal("withdrawn by a browser that never signed in")
		}
		// Signing in again as another patient does not make it the patient's.
		const antonia = "fe07e69a-4d6d-4e11-a675-de69f62de5f3"
		if err := signIn(t, d, other, "verify-hospital", antonia); err == nil || other.Status != http.StatusForbidden {
			t.Errorf("sign-in as another patient: status %d", other.Status)
		}
		if ok, err := d.store.IsPatientSession(ctx, d.ReviewID, sessionBinding(t, d, other)); err != nil || ok {
			t.Errorf("another patient's sign-in made the browser the patient's (%v)", err)
		}
		// Signing in again as the patient does, and the sign-in's own grant is gone at once.
		if err := signIn(t, d, other, "verify-hospital", Patient); err != nil {
			t.Fatalf("sign-in as the patient: %v (status %d)", err, other.Status)
		}
		if keys, err := storetest.Keys(ctx, d.store.Client(), d.store.Prefix()+"{"+d.ReviewID+".verify*"); err != nil || len(keys) != 0 {
			t.Errorf("the sign-in's grant was kept: %v %v", keys, err)
		}
		if _, err := d.store.LoadGrant(ctx, d.ReviewID+"/hospital"); err != nil {
			t.Errorf("the consent's grant was lost to the sign-in: %v", err)
		}
		if err := other.Submit(ctx, "withdraw", nil); err != nil {
			t.Fatalf("withdrawal after signing in: %v", err)
		}
		if r, _ := d.store.GetReview(ctx, d.ReviewID); r.State != "withdrawn" {
			t.Errorf("state %s after withdrawal", r.State)
		}
	})

	t.Run("a sign-in where the review names no patient proves nothing", func(t *testing.T) {
		d, _ := startDemo(t)
		useReview(t, d, map[string]string{"hospital": Patient, "province": ""})
		b := NewBrowser()
		if err := signIn(t, d, b, "authorize-hospital", Patient); err != nil {
			t.Fatal(err)
		}
		// Whoever holds the link may allow access at the province, where the review names no patient (the design
		// of such a review), but that does not make their browser the patient's.
		other := NewBrowser()
		if err := signIn(t, d, other, "authorize-province", Patient); err != nil {
			t.Fatalf("consent at the province: %v (status %d)", err, other.Status)
		}
		if ok, err := d.store.IsPatientSession(ctx, d.ReviewID, sessionBinding(t, d, other)); err != nil || ok {
			t.Errorf("a sign-in at a source naming no patient made the browser the patient's (%v)", err)
		}
		if err := other.Get(ctx, d.ConsentURL); err != nil {
			t.Fatal(err)
		}
		if len(other.Options("csrf")) != 0 || other.Has("verify-province") || !other.Has("verify-hospital") {
			t.Errorf("the page offers the wrong way to withdraw: form %v, province %v, hospital %v",
				other.Options("csrf"), other.Has("verify-province"), other.Has("verify-hospital"))
		}
		if status, body := postForgedWithdraw(t, d, other); status != http.StatusForbidden || !strings.Contains(body, "first sign in") {
			t.Errorf("withdrawal after a sign-in at the province: %d", status)
		}
		resp, err := other.client.Get(d.ConsentURL + "/verify/province")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusConflict {
			t.Errorf("identity sign-in at the province: %d", resp.StatusCode)
		}
	})

	t.Run("a source already consented at is not authorized again", func(t *testing.T) {
		d, _ := startDemo(t)
		b := NewBrowser()
		if err := signIn(t, d, b, "authorize-hospital", Patient); err != nil {
			t.Fatal(err)
		}
		before, err := d.store.LoadGrant(ctx, d.ReviewID+"/hospital")
		if err != nil {
			t.Fatal(err)
		}
		other := NewBrowser()
		resp, err := other.client.Get(d.ConsentURL + "/authorize/hospital")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusConflict {
			t.Errorf("authorizing a consented source again: %d", resp.StatusCode)
		}
		if after, err := d.store.LoadGrant(ctx, d.ReviewID+"/hospital"); err != nil || !bytes.Equal(after, before) {
			t.Errorf("the patient's grant changed: %v", err)
		}
	})

	t.Run("no open redirect", func(t *testing.T) {
		d, _ := startDemo(t)
		b := NewBrowser()
		b.StopAt(func(u *url.URL) bool {
			return u.Host != strings.TrimPrefix(d.GatewayURL, "http://") && u.Host != strings.TrimPrefix(d.SandboxURL, "http://")
		})
		for _, path := range []string{
			"/consent/" + d.ReviewID + "/authorize/evil.example",
			"/consent/" + d.ReviewID + "/authorize/..%2f..%2fevil",
			"/auth/callback/evil?code=x&state=y&iss=https://evil.example",
			"/consent/" + d.ReviewID + "?lang=https://evil.example",
			"//evil.example/",
		} {
			_ = b.Get(ctx, d.GatewayURL+path)
			if b.Stopped != nil {
				t.Errorf("%s redirected to %s", path, b.Stopped)
				b.Stopped = nil
			}
		}
	})
}

// TestNoSecretsInGatewayLogs runs the whole flow with debug logging and checks that no token, code, state, patient
// id or name reached the gateway's log.
func TestNoSecretsInGatewayLogs(t *testing.T) {
	d, logs := startDemo(t)
	var out bytes.Buffer
	if err := d.Walkthrough(context.Background(), &out); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	text := logs.String()
	if len(text) < 200 {
		t.Fatalf("too little logged to check: %q", text)
	}
	for _, s := range []string{Patient, "Todd315", "Stamm704", "999-35-5722", "Bearer", "code=", "state=", "access_token", "refresh_token", "eyJ"} {
		if strings.Contains(text, s) {
			i := strings.Index(text, s)
			t.Errorf("log contains %q: …%s…", s, text[max(0, i-80):min(len(text), i+80)])
		}
	}
}

// sessionBinding is the gateway's binding of b's session cookie: the hex SHA-256 of its value.
func sessionBinding(t *testing.T, d *Demo, b *Browser) string {
	t.Helper()
	gw, _ := url.Parse(d.GatewayURL)
	for _, c := range b.client.Jar.Cookies(gw) {
		if c.Name == "secondlook" {
			sum := sha256.Sum256([]byte(c.Value))
			return hex.EncodeToString(sum[:])
		}
	}
	t.Fatal("no session cookie")
	return ""
}

// forgeWithdrawToken computes the withdrawal form's token for b's session as the gateway would, with its key: the
// token a page would have given b, had it offered b the form.
func forgeWithdrawToken(t *testing.T, d *Demo, b *Browser) string {
	t.Helper()
	m := hmac.New(sha256.New, d.csrfKey)
	fmt.Fprintf(m, "withdraw\x00%s\x00%s", d.ReviewID, sessionBinding(t, d, b))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// useReview has the EHR create a review of the demo patient's records at the given sources, naming the patient at
// each where the map gives an id, and makes it the one d's consent link and helpers use.
func useReview(t *testing.T, d *Demo, patients map[string]string) {
	t.Helper()
	var sources []map[string]string
	for _, src := range []string{"hospital", "province"} {
		if p, ok := patients[src]; ok {
			s := map[string]string{"source": src}
			if p != "" {
				s["patient"] = p
			}
			sources = append(sources, s)
		}
	}
	var r struct {
		ID         string `json:"id"`
		ConsentURL string `json:"consentUrl"`
	}
	resp, raw, err := d.API(context.Background(), EHRClient, http.MethodPost, "/api/v1/reviews",
		map[string]any{"sources": sources, "provider": ProviderClient, "question": "Is surgery indicated?"}, &r)
	if err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("create review: %v %s", err, raw)
	}
	d.ReviewID, d.ConsentURL = r.ID, r.ConsentURL
}
