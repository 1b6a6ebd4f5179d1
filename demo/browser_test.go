package demo

import (
	"context"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// chromium finds Debian's chromium. CI installs it (.ci/run); elsewhere the test is skipped with the reason.
func chromium(t *testing.T) string {
	t.Helper()
	for _, p := range []string{os.Getenv("CHROMIUM"), "/usr/bin/chromium", "/usr/bin/chromium-browser"} {
		if p == "" {
			continue
		}
		if _, err := exec.LookPath(p); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("chromium is not installed; .ci/run installs it")
	}
	t.Skip("chromium not installed (apt-get install -y chromium)")
	return ""
}

// TestConsentInRealBrowser drives Debian's chromium through the patient's path: open the consent link on a phone,
// sign in and approve at both sources, come back and see the consent recorded; then, on a laptop (a second chromium
// with its own profile), open the same link, find that withdrawing there first needs signing in again, sign in at
// the hospital, withdraw, and see that too.
func TestConsentInRealBrowser(t *testing.T) {
	exe := chromium(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	d, err := Start(ctx, Options{Addr: "127.0.0.1:0", SandboxAddr: "127.0.0.1:0", RedisURL: os.Getenv("REDIS_URL")})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()

	phone := startChromium(ctx, t, exe, 390, 844)
	phone.do(chromedp.Navigate(d.ConsentURL), chromedp.WaitVisible(chromedp.CSS("#authorize-hospital")))
	lang, err := chromedp.Run(phone.ctx, chromedp.Evaluate[string]("document.documentElement.lang"))
	if err != nil {
		t.Fatal(err)
	}
	for _, src := range []string{"hospital", "province"} {
		phone.do(
			chromedp.Click(chromedp.CSS("#authorize-"+src)),
			chromedp.WaitVisible(chromedp.CSS("#patient-"+Patient)),
			chromedp.Click(chromedp.CSS("#patient-"+Patient)),
			chromedp.Click(chromedp.CSS("#approve")),
			chromedp.WaitVisible(chromedp.CSS("#state-"+src+".ok")),
		)
	}
	hospitalState, provinceState := phone.text("#state-hospital"), phone.text("#state-province")
	shot, err := chromedp.Run(phone.ctx, chromedp.FullScreenshot(80))
	if err != nil {
		t.Fatal(err)
	}
	if lang != "en" || hospitalState != "Access allowed" || provinceState != "Access allowed" {
		t.Errorf("lang %q, hospital %q, province %q", lang, hospitalState, provinceState)
	}
	if phone.count("#withdraw") != 1 {
		t.Error("the browser that consented is not offered the withdrawal")
	}
	if dir := os.Getenv("SCREENSHOT_DIR"); dir != "" {
		_ = os.WriteFile(dir+"/consent-phone.jpg", shot, 0o600)
	}

	laptop := startChromium(ctx, t, exe, 1280, 800)
	laptop.do(chromedp.Navigate(d.ConsentURL), chromedp.WaitVisible(chromedp.CSS("#verify-hospital")))
	if laptop.count("#withdraw") != 0 {
		t.Error("a browser that never signed in is offered the withdrawal")
	}
	laptop.do(
		chromedp.Click(chromedp.CSS("#verify-hospital")),
		chromedp.WaitVisible(chromedp.CSS("#patient-"+Patient)),
		chromedp.Click(chromedp.CSS("#patient-"+Patient)),
		chromedp.Click(chromedp.CSS("#approve")),
		chromedp.WaitVisible(chromedp.CSS("#withdraw")),
		chromedp.Click(chromedp.CSS("#withdraw")),
		chromedp.WaitVisible(chromedp.CSS("#withdrawn")),
	)
	if withdrawn := laptop.text("#withdrawn"); !strings.Contains(withdrawn, "withdrawn") {
		t.Errorf("withdrawal not shown: %q", withdrawn)
	}
	// The review is withdrawn at the gateway too.
	var rv struct {
		State string `json:"state"`
	}
	if _, _, err := d.API(ctx, EHRClient, "GET", "/api/v1/reviews/"+d.ReviewID, nil, &rv); err != nil || rv.State != "withdrawn" {
		t.Errorf("review state %q, %v", rv.State, err)
	}
}

// browser is one headless chromium with its own profile (its own cookies), and the test's steps in it.
type browser struct {
	t   *testing.T
	ctx context.Context
}

// startChromium starts a chromium with a fresh profile and a window of width × height; it ends with the test.
func startChromium(ctx context.Context, t *testing.T, exe string, width, height int) *browser {
	t.Helper()
	alloc, cancelAlloc := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(exe), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("disable-quic", true),
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(width, height),
	)
	t.Cleanup(cancelAlloc)
	bctx, cancelBrowser := chromedp.NewContext(alloc)
	t.Cleanup(cancelBrowser)
	// Start the browser on bctx itself: the first run binds its lifetime to the context it is given.
	if err := chromedp.Do(bctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return &browser{t: t, ctx: bctx}
}

// do runs steps, failing the test with the page's location and text if one fails.
func (b *browser) do(steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	sctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(sctx, steps...); err != nil {
		loc, _ := chromedp.Run(b.ctx, chromedp.Location())
		page, _ := chromedp.Run(b.ctx, chromedp.Evaluate[string]("document.body ? document.body.innerText : ''"))
		b.t.Fatalf("browser: %v\nat %s\n%s", err, loc, page)
	}
}

// text is the trimmed text of the element sel.
func (b *browser) text(sel string) string {
	b.t.Helper()
	s, err := chromedp.Run(b.ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		b.t.Fatalf("browser: read %s: %v", sel, err)
	}
	return strings.TrimSpace(s)
}

// count is how many elements on the page match the CSS selector sel.
func (b *browser) count(sel string) int {
	b.t.Helper()
	n, err := chromedp.Run(b.ctx, chromedp.Evaluate[int]("document.querySelectorAll("+strconv.Quote(sel)+").length"))
	if err != nil {
		b.t.Fatalf("browser: count %s: %v", sel, err)
	}
	return n
}
