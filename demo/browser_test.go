package demo

import (
	"context"
	"os"
	"os/exec"
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

// TestConsentInRealBrowser drives Debian's chromium through the patient's path: open the consent link, sign in and
// approve at both sources, come back and see the consent recorded, then withdraw and see that too.
func TestConsentInRealBrowser(t *testing.T) {
	exe := chromium(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	d, err := Start(ctx, Options{Addr: "127.0.0.1:0", SandboxAddr: "127.0.0.1:0", RedisURL: os.Getenv("REDIS_URL")})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()

	alloc, cancelAlloc := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(exe), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("disable-quic", true),
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(390, 844), // a phone
	)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(alloc)
	defer cancelBrowser()
	// Start the browser on bctx itself: the first run binds its lifetime to the context it is given.
	if err := chromedp.Do(bctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}

	do := func(steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		sctx, cancel := context.WithTimeout(bctx, 30*time.Second)
		defer cancel()
		if err := chromedp.Do(sctx, steps...); err != nil {
			loc, _ := chromedp.Run(bctx, chromedp.Location())
			page, _ := chromedp.Run(bctx, chromedp.Evaluate[string]("document.body ? document.body.innerText : ''"))
			t.Fatalf("browser: %v\nat %s\n%s", err, loc, page)
		}
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(bctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("browser: read %s: %v", sel, err)
		}
		return strings.TrimSpace(s)
	}
	do(chromedp.Navigate(d.ConsentURL), chromedp.WaitVisible(chromedp.CSS("#authorize-hospital")))
	lang, err := chromedp.Run(bctx, chromedp.Evaluate[string]("document.documentElement.lang"))
	if err != nil {
		t.Fatal(err)
	}
	for _, src := range []string{"hospital", "province"} {
		do(
			chromedp.Click(chromedp.CSS("#authorize-"+src)),
			chromedp.WaitVisible(chromedp.CSS("#patient-"+Patient)),
			chromedp.Click(chromedp.CSS("#patient-"+Patient)),
			chromedp.Click(chromedp.CSS("#approve")),
			chromedp.WaitVisible(chromedp.CSS("#state-"+src+".ok")),
		)
	}
	hospitalState, provinceState := text("#state-hospital"), text("#state-province")
	shot, err := chromedp.Run(bctx, chromedp.FullScreenshot(80))
	if err != nil {
		t.Fatal(err)
	}
	do(chromedp.Click(chromedp.CSS("#withdraw")), chromedp.WaitVisible(chromedp.CSS("#withdrawn")))
	withdrawn := text("#withdrawn")
	if lang != "en" || hospitalState != "Access allowed" || provinceState != "Access allowed" {
		t.Errorf("lang %q, hospital %q, province %q", lang, hospitalState, provinceState)
	}
	if !strings.Contains(withdrawn, "withdrawn") {
		t.Errorf("withdrawal not shown: %q", withdrawn)
	}
	if dir := os.Getenv("SCREENSHOT_DIR"); dir != "" {
		_ = os.WriteFile(dir+"/consent-phone.jpg", shot, 0o600)
	}
	// The review is withdrawn at the gateway too.
	var rv struct {
		State string `json:"state"`
	}
	if _, _, err := d.API(ctx, EHRClient, "GET", "/api/v1/reviews/"+d.ReviewID, nil, &rv); err != nil || rv.State != "withdrawn" {
		t.Errorf("review state %q, %v", rv.State, err)
	}
}
