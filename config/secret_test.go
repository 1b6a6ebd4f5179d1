package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestSecretRefResolve(t *testing.T) {
	const secret = "s3cr3t-Value"
	pem := "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBg\n-----END PRIVATE KEY-----"

	dir := t.TempDir()
	write := func(name, content string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	plain := write("plain", secret)
	newline := write("newline", secret+"\n")
	crlf := write("crlf", secret+"\r\n")
	pemFile := write("key.pem", pem+"\n")
	empty := write("empty", "")
	onlyNewline := write("only-newline", "\n")
	atLimit := write("at-limit", strings.Repeat("k", 1<<20))
	tooBig := write("too-big", strings.Repeat("k", 1<<20+1))

	t.Setenv("SECONDLOOK_TEST_SECRET", secret)
	t.Setenv("SECONDLOOK_TEST_EMPTY", "")
	t.Setenv("SECONDLOOK_TEST_NEWLINE", secret+"\n")

	tests := []struct {
		name    string
		ref     SecretRef
		want    string
		wantErr string // substring of the error; "" means success
	}{
		{name: "env", ref: "env:SECONDLOOK_TEST_SECRET", want: secret},
		{name: "env keeps value as set", ref: "env:SECONDLOOK_TEST_NEWLINE", want: secret + "\n"},
		{name: "env unset", ref: "env:SECONDLOOK_TEST_UNSET", wantErr: "resolve secret env:SECONDLOOK_TEST_UNSET: environment variable is not set"},
		{name: "env empty", ref: "env:SECONDLOOK_TEST_EMPTY", wantErr: "resolve secret env:SECONDLOOK_TEST_EMPTY: secret is empty"},
		{name: "file", ref: SecretRef("file:" + plain), want: secret},
		{name: "file trailing newline trimmed", ref: SecretRef("file:" + newline), want: secret},
		{name: "file trailing CRLF trimmed", ref: SecretRef("file:" + crlf), want: secret},
		{name: "file PEM keeps inner newlines", ref: SecretRef("file:" + pemFile), want: pem},
		{name: "file at size limit", ref: SecretRef("file:" + atLimit), want: strings.Repeat("k", 1<<20)},
		{name: "file empty", ref: SecretRef("file:" + empty), wantErr: "resolve secret file:" + empty + ": secret is empty"},
		{name: "file only newline", ref: SecretRef("file:" + onlyNewline), wantErr: "secret is empty"},
		{name: "file missing", ref: SecretRef("file:" + filepath.Join(dir, "missing")), wantErr: "resolve secret file:" + filepath.Join(dir, "missing") + ": open"},
		{name: "file too big", ref: SecretRef("file:" + tooBig), wantErr: "file is larger than 1048576 bytes"},
		{name: "file is a directory", ref: SecretRef("file:" + dir), wantErr: "resolve secret file:" + dir},
		{name: "file relative", ref: "file:secret.txt", wantErr: `resolve secret: "file:" must be followed by an absolute path`},
		{name: "env bad name", ref: "env:NOT-A-NAME", wantErr: `resolve secret: "env:" must be followed by an environment variable name`},
		{name: "literal secret", ref: secret, wantErr: `resolve secret: must be a reference "env:NAME" or "file:/absolute/path", not a literal secret`},
		{name: "empty reference", ref: "", wantErr: "resolve secret: no reference configured"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.ref.Resolve()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Resolve: %v", err)
				}
				if diff := cmp.Diff(tt.want, string(got)); diff != "" {
					t.Errorf("Resolve mismatch (-want +got):\n%s", diff)
				}
				return
			}
			if err == nil {
				t.Fatalf("Resolve succeeded; want error containing %q", tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Resolve error = %q, want it to contain %q", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), "kkkk") {
				t.Errorf("Resolve error contains the secret: %q", err)
			}
			if got != nil {
				t.Errorf("Resolve returned %d bytes with an error", len(got))
			}
		})
	}
}

func TestSecretRefPrintingRedactsLiterals(t *testing.T) {
	const literal = "hunter2-literal"
	tests := []struct {
		name string
		ref  SecretRef
		want string
	}{
		{name: "env reference", ref: "env:ST_MARY_SECRET", want: "env:ST_MARY_SECRET"},
		{name: "file reference", ref: "file:/run/secrets/x", want: "file:/run/secrets/x"},
		{name: "unset", ref: "", want: ""},
		{name: "literal", ref: literal, want: "[redacted: not a secret reference]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.ref.String(); got != tt.want {
				t.Errorf("String() = %q, want %q", got, tt.want)
			}
		})
	}

	cfg := wantExample()
	cfg.Sources[0].Auth.ClientSecret = literal
	cfg.Sources[1].Auth.PrivateKey = literal
	for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
		t.Run(verb, func(t *testing.T) {
			out := fmt.Sprintf(verb, cfg)
			if strings.Contains(out, literal) {
				t.Errorf("fmt %s of a Config shows a literal secret:\n%s", verb, out)
			}
			if !strings.Contains(out, "[redacted: not a secret reference]") {
				t.Errorf("fmt %s of a Config lacks the redaction marker:\n%s", verb, out)
			}
		})
	}
}
