package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// SecretRef says where a secret is kept, never the secret itself: "env:NAME" reads environment variable NAME and
// "file:/abs/path" reads a file. Keeping only references in the config means a Config can be printed, logged or
// diffed without leaking credentials. Validate checks the syntax; [SecretRef.Resolve] reads the secret.
type SecretRef string

const (
	secretEnvScheme  = "env:"
	secretFileScheme = "file:"
	// maxSecretBytes bounds a secret file; a PEM key or client secret is far smaller.
	maxSecretBytes = 1 << 20
)

var (
	envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

	errSecretRefSyntax = errors.New(`must be a reference "env:NAME" or "file:/absolute/path", not a literal secret`)
	errSecretEnvName   = errors.New(`"env:" must be followed by an environment variable name matching [A-Za-z_][A-Za-z0-9_]*`)
	errSecretFilePath  = errors.New(`"file:" must be followed by an absolute path`)
)

// check validates the syntax of r. Its errors never quote r: a value that fails the check may be a literal secret.
func (r SecretRef) check() (scheme, target string, err error) {
	s := string(r)
	if name, ok := strings.CutPrefix(s, secretEnvScheme); ok {
		if !envNameRE.MatchString(name) {
			return "", "", errSecretEnvName
		}
		return secretEnvScheme, name, nil
	}
	if path, ok := strings.CutPrefix(s, secretFileScheme); ok {
		if !filepath.IsAbs(path) || strings.ContainsRune(path, 0) {
			return "", "", errSecretFilePath
		}
		return secretFileScheme, path, nil
	}
	return "", "", errSecretRefSyntax
}

// wellFormed reports whether r is a syntactically valid, non-empty reference.
func (r SecretRef) wellFormed() bool {
	_, _, err := r.check()
	return err == nil
}

// String returns the reference, or a placeholder if r is not a well-formed reference (and so may be a literal
// secret pasted into the config by mistake), so that printing a Config with %v or %+v never shows a secret.
func (r SecretRef) String() string {
	if r == "" {
		return ""
	}
	if _, _, err := r.check(); err != nil {
		return "[redacted: not a secret reference]"
	}
	return string(r)
}

// GoString redacts like String, for %#v.
func (r SecretRef) GoString() string {
	return fmt.Sprintf("config.SecretRef(%q)", r.String())
}

// Resolve reads the secret r refers to. A file secret is limited to 1 MiB and has trailing CR and LF characters
// removed, since secret files written with echo or an editor usually end in a newline that is not part of the
// secret. An unset variable, a missing file and an empty secret are errors. Errors name the reference, never the
// secret's value.
func (r SecretRef) Resolve() ([]byte, error) {
	if r == "" {
		return nil, errors.New("resolve secret: no reference configured")
	}
	scheme, target, err := r.check()
	if err != nil {
		// Do not name r here: a malformed reference may be the secret itself.
		return nil, fmt.Errorf("resolve secret: %w", err)
	}
	var secret []byte
	switch scheme {
	case secretEnvScheme:
		v, ok := os.LookupEnv(target)
		if !ok {
			return nil, fmt.Errorf("resolve secret %s: environment variable is not set", r)
		}
		secret = []byte(v)
	case secretFileScheme:
		secret, err = readSecretFile(target)
		if err != nil {
			return nil, fmt.Errorf("resolve secret %s: %w", r, err)
		}
		secret = bytes.TrimRight(secret, "\r\n")
	}
	if len(secret) == 0 {
		return nil, fmt.Errorf("resolve secret %s: secret is empty", r)
	}
	return secret, nil
}

func readSecretFile(path string) ([]byte, error) {
	f, err := os.Open(path) //nolint:gosec // The path comes from the operator's config, not from a request.
	if err != nil {
		return nil, err
	}
	defer f.Close() //nolint:errcheck // Read-only file; a close error cannot lose data.
	b, err := io.ReadAll(io.LimitReader(f, maxSecretBytes+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxSecretBytes {
		return nil, fmt.Errorf("file is larger than %d bytes", maxSecretBytes)
	}
	return b, nil
}
