package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// deidTestdata holds the de-identification fixtures (with their attribution README).
const deidTestdata = "../../fhir/deid/testdata"

func writeDeidKey(t *testing.T, dir string) string {
	t.Helper()
	secret := make([]byte, 32)
	for i := range secret {
		secret[i] = byte(i * 7)
	}
	kf, _ := json.Marshal(map[string]string{"id": "cli-key", "secret": base64.StdEncoding.EncodeToString(secret)})
	p := filepath.Join(dir, "key.json")
	if err := os.WriteFile(p, kf, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func runDeidTest(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	if stdin != "" {
		f, err := os.CreateTemp(t.TempDir(), "stdin")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteString(stdin); err != nil {
			t.Fatal(err)
		}
		if _, err := f.Seek(0, 0); err != nil {
			t.Fatal(err)
		}
		old := os.Stdin
		os.Stdin = f
		defer func() { os.Stdin = old; _ = f.Close() }()
	}
	var out, errOut strings.Builder
	code := runDeid(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestDeidCLI(t *testing.T) {
	dir := t.TempDir()
	key := writeDeidKey(t, dir)
	input := filepath.Join(deidTestdata, "adversarial", "ontario-everything.json")
	report := filepath.Join(dir, "report.json")

	t.Run("file input with key and report", func(t *testing.T) {
		code, out, errOut := runDeidTest(t, "", "--key-file", key, "--report", report, "--scope", "review-9", input)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		var b map[string]any
		if err := json.Unmarshal([]byte(out), &b); err != nil || b["type"] != "collection" {
			t.Fatalf("stdout is not a collection Bundle: %v", err)
		}
		for _, phi := range []string{"Tremblay", "1234567890", "555-0142", "K1S 5B6", "Rideau"} {
			if strings.Contains(out, phi) {
				t.Errorf("output contains %q", phi)
			}
		}
		rep, err := os.ReadFile(report)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(rep), `"keyId": "cli-key"`) || strings.Contains(string(rep), "Tremblay") {
			t.Errorf("report: %s", rep)
		}
		// Same key and scope: byte-identical.
		_, again, _ := runDeidTest(t, "", "--key-file", key, "--scope", "review-9", input)
		if again != out {
			t.Error("same key and scope gave different output")
		}
	})
	t.Run("stdin without key", func(t *testing.T) {
		code, out, errOut := runDeidTest(t, `{"resourceType":"Observation","id":"o","status":"final","code":{"text":"x"}}`, "-")
		if code != 0 || !strings.Contains(errOut, "random key") || !strings.Contains(out, `"Observation"`) {
			t.Fatalf("exit %d, stderr %q, stdout %q", code, errOut, out)
		}
	})
	t.Run("ndjson", func(t *testing.T) {
		nd := `{"resourceType":"Patient","id":"p","gender":"male","name":[{"family":"Zyxwv"}]}` + "\n" +
			`{"resourceType":"Observation","id":"o","status":"final","code":{"text":"Zyxwv ok"},"subject":{"reference":"Patient/p"}}` + "\n"
		code, out, errOut := runDeidTest(t, nd, "--key-file", key)
		if code != 0 || strings.Contains(out, "Zyxwv") || !strings.Contains(out, `"[NAME] ok"`) {
			t.Fatalf("exit %d, stderr %q, stdout %q", code, errOut, out)
		}
	})
	t.Run("ndjson directory", func(t *testing.T) {
		nd := t.TempDir()
		if err := os.WriteFile(filepath.Join(nd, "Patient.ndjson"), []byte(`{"resourceType":"Patient","id":"p","gender":"female","name":[{"family":"Qwertz"}]}`+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(nd, "Observation.ndjson"), []byte(`{"resourceType":"Observation","id":"o1","status":"final","code":{"text":"Qwertz a"},"subject":{"reference":"Patient/p"}}`+"\n"+
			`{"resourceType":"Observation","id":"o2","status":"final","code":{"text":"b"},"subject":{"reference":"Patient/p"}}`+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		code, out, errOut := runDeidTest(t, "", "--key-file", key, nd)
		if code != 0 || strings.Contains(out, "Qwertz") || strings.Count(out, `"resourceType":"Observation"`) != 2 || !strings.Contains(out, `"female"`) {
			t.Fatalf("exit %d, stderr %q, stdout %q", code, errOut, out)
		}
		if code, _, _ := runDeidTest(t, "", "--key-file", key, t.TempDir()); code != 1 {
			t.Errorf("empty directory: exit %d", code)
		}
	})
	t.Run("invalid input exits 1 without PHI", func(t *testing.T) {
		code, out, errOut := runDeidTest(t, `{"resourceType":"Patient","name":[{"family":"Secretname`+"\xff"+`"}]}`, "--key-file", key)
		if code != 1 || out != "" || strings.Contains(errOut, "Secretname") || !strings.Contains(errOut, "invalid UTF-8") {
			t.Fatalf("exit %d, stderr %q", code, errOut)
		}
	})
	t.Run("residual rejection exits 3 with nothing on stdout", func(t *testing.T) {
		in := `{"resourceType":"Bundle","type":"collection","entry":[{"resource":{"resourceType":"Patient","id":"p","identifier":[{"value":"9876543217"}]}},` +
			`{"resource":{"resourceType":"Observation","id":"o","status":"final","code":{"coding":[{"system":"http://x","code":"9876543217"}]}}}]}`
		code, out, errOut := runDeidTest(t, in, "--key-file", key)
		if code != 3 || out != "" || strings.Contains(errOut, "9876543217") || !strings.Contains(errOut, "identifier") {
			t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
		}
	})
	t.Run("profiles", func(t *testing.T) {
		bad := filepath.Join(dir, "bad.yaml")
		if err := os.WriteFile(bad, []byte("profile: x\nversion: 1\nresources:\n  Patient:\n    name: keep\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if code, _, errOut := runDeidTest(t, "", "--profile", bad, "--key-file", key, input); code != 1 || !strings.Contains(errOut, "can never be kept") {
			t.Fatalf("bad profile: exit %d, %q", code, errOut)
		}
		if code, _, _ := runDeidTest(t, "", "--profile", "no-such-profile", "--key-file", key, input); code != 1 {
			t.Fatalf("missing profile: exit %d", code)
		}
		good := filepath.Join(dir, "good.json")
		if err := os.WriteFile(good, []byte(`{"profile":"obs","version":"1","resources":{"Observation":{"status":"keep","code":"keep"}}}`), 0o600); err != nil {
			t.Fatal(err)
		}
		code, out, errOut := runDeidTest(t, "", "--profile", good, "--key-file", key, input)
		if code != 0 || strings.Contains(out, `"Patient"`) || !strings.Contains(out, `"Observation"`) {
			t.Fatalf("user profile: exit %d, %q", code, errOut)
		}
	})
	t.Run("bad key files", func(t *testing.T) {
		short := filepath.Join(dir, "short.key")
		if err := os.WriteFile(short, []byte("tooshort"), 0o600); err != nil {
			t.Fatal(err)
		}
		if code, _, errOut := runDeidTest(t, "", "--key-file", short, input); code != 1 || !strings.Contains(errOut, "at least 32 bytes") {
			t.Fatalf("exit %d, %q", code, errOut)
		}
		raw := filepath.Join(dir, "raw.key")
		if err := os.WriteFile(raw, []byte(strings.Repeat("k", 40)), 0o600); err != nil {
			t.Fatal(err)
		}
		if code, _, errOut := runDeidTest(t, "", "--key-file", raw, "--report", report, input); code != 0 {
			t.Fatalf("raw key: exit %d, %q", code, errOut)
		}
	})
	t.Run("usage", func(t *testing.T) {
		if code, _, _ := runDeidTest(t, "", "--nope"); code != 2 {
			t.Errorf("exit %d", code)
		}
		if code, _, _ := runDeidTest(t, "", "a", "b"); code != 2 {
			t.Errorf("exit %d", code)
		}
	})
}
