package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"secondlook/fhir/deid"
)

// maxKeyFileBytes bounds a key file.
const maxKeyFileBytes = 64 << 10

// runDeid implements `secondlook deid`: it de-identifies one patient's FHIR R4 Bundle (or single resource, NDJSON
// of resources, or a directory of .ndjson files as `secondlook fetch` writes) into a collection Bundle on stdout. Exit codes: 0 success, 1 invalid input, profile or
// key, 2 usage, 3 the residual scan rejected the output (nothing is written to stdout).
//
// Key file format: either JSON {"id": "k1", "secret": "<standard base64 of at least 32 bytes>"}, or a raw file
// whose whole content (at least 32 bytes) is the secret, in which case the key id is "sha256:" and the first 16
// hex digits of the secret's SHA-256. Only the id appears in output.
func runDeid(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("deid", stderr)
	profileArg := fs.String("profile", deid.DefaultProfile, "embedded profile name ("+strings.Join(deid.EmbeddedProfiles(), ", ")+") or a profile file (YAML or JSON)")
	keyFile := fs.String("key-file", "", `key file: JSON {"id":"k1","secret":"<base64, >= 32 bytes>"} or raw secret bytes (default: a random key)`)
	reportPath := fs.String("report", "", "write the de-identification report (JSON, no PHI) to this file")
	scope := fs.String("scope", "", "review id: pseudonyms, date shift and UIDs are keyed by key and scope")
	setUsage(fs, stderr,
		"usage: secondlook deid [--profile NAME|FILE] [--key-file FILE] [--report FILE] [--scope ID] [INPUT]",
		"\nDe-identifies INPUT (a FHIR R4 Bundle, a single resource, NDJSON, or a directory of .ndjson files as",
		"written by 'secondlook fetch'; stdin when absent or -) and",
		"writes a collection Bundle to stdout. Exit 0 ok, 1 invalid input/profile/key, 3 rejected by the residual scan.",
	)
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() > 1 {
		fmt.Fprintln(stderr, "secondlook deid: at most one INPUT")
		return 2
	}
	fail := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "secondlook deid: "+format+"\n", a...)
		return 1
	}
	prof, err := loadDeidProfile(*profileArg)
	if err != nil {
		return fail("%v", err)
	}
	key, err := loadDeidKey(*keyFile)
	if err != nil {
		return fail("%v", err)
	}
	if *keyFile == "" {
		fmt.Fprintf(stderr, "secondlook deid: no --key-file given: using a random key (id %s); pseudonyms will not match any other run\n", key.ID)
	}
	lim := deid.DefaultLimits()
	var data []byte
	if name := fs.Arg(0); name != "" && name != "-" {
		if data, err = readDeidInput(name, lim.MaxInputBytes); err != nil {
			return fail("%v", err)
		}
	} else if data, err = io.ReadAll(io.LimitReader(os.Stdin, lim.MaxInputBytes+1)); err != nil {
		return fail("read input: %v", err)
	}
	if int64(len(data)) > lim.MaxInputBytes {
		return fail("invalid input: larger than the limit of %d bytes", lim.MaxInputBytes)
	}
	if err := ctx.Err(); err != nil {
		return fail("%v", err)
	}
	data = ndjsonToBundle(data)
	res, err := deid.Deidentify(data, deid.Options{Profile: prof, Key: key, Scope: *scope, Limits: lim})
	if err != nil {
		var re *deid.ResidualError
		if errors.As(err, &re) {
			fmt.Fprintf(stderr, "secondlook deid: %v; no output written\n", err)
			return 3
		}
		return fail("%v", err)
	}
	if *reportPath != "" {
		rep, err := json.MarshalIndent(res.Report, "", "  ")
		if err != nil {
			return fail("encode report: %v", err)
		}
		if err := os.WriteFile(*reportPath, append(rep, '\n'), 0o600); err != nil {
			return fail("write report: %v", err)
		}
	}
	if _, err := stdout.Write(append(res.Bundle, '\n')); err != nil {
		return fail("write output: %v", err)
	}
	return 0
}

// readDeidInput reads a file, or every *.ndjson file of a directory (what `secondlook fetch --out DIR`
// writes), concatenated in name order, up to limit+1 bytes.
func readDeidInput(name string, limit int64) ([]byte, error) {
	st, err := os.Stat(name)
	if err != nil {
		return nil, fmt.Errorf("open input: %w", err)
	}
	files := []string{name}
	if st.IsDir() {
		if files, err = filepath.Glob(filepath.Join(name, "*.ndjson")); err != nil || len(files) == 0 {
			return nil, fmt.Errorf("input directory %s holds no .ndjson files", name)
		}
		sort.Strings(files)
	}
	var buf bytes.Buffer
	for _, f := range files {
		fh, err := os.Open(f) //nolint:gosec // G304: the operator's INPUT argument, or a file in that directory
		if err != nil {
			return nil, fmt.Errorf("open input: %w", err)
		}
		_, err = io.Copy(&buf, io.LimitReader(fh, limit+1-int64(buf.Len())))
		_ = fh.Close() // read only: the copy's error is the one that matters
		if err != nil {
			return nil, fmt.Errorf("read input: %w", err)
		}
		if st.IsDir() {
			buf.WriteByte('\n')
		}
		if int64(buf.Len()) > limit {
			break
		}
	}
	return buf.Bytes(), nil
}

// loadDeidProfile returns an embedded profile by name, or parses the file at arg.
func loadDeidProfile(arg string) (*deid.Profile, error) {
	if slices.Contains(deid.EmbeddedProfiles(), arg) {
		return deid.LoadProfile(arg)
	}
	f, err := os.Open(arg) //nolint:gosec // G304: the operator's --profile file
	if err != nil {
		return nil, fmt.Errorf("profile %q is neither an embedded profile (%s) nor a readable file: %w", arg, strings.Join(deid.EmbeddedProfiles(), ", "), err)
	}
	defer func() { _ = f.Close() }() // read only
	data, err := io.ReadAll(io.LimitReader(f, 1<<20+1))
	if err != nil {
		return nil, fmt.Errorf("read profile: %w", err)
	}
	p, err := deid.ParseProfile(data)
	if err != nil {
		return nil, fmt.Errorf("profile %s: %w", arg, err)
	}
	return p, nil
}

// loadDeidKey reads a key file (see runDeid for the format), or makes a random key when path is "".
func loadDeidKey(path string) (deid.Key, error) {
	if path == "" {
		secret := make([]byte, 32)
		if _, err := rand.Read(secret); err != nil {
			return deid.Key{}, fmt.Errorf("random key: %w", err)
		}
		id := make([]byte, 4)
		_, _ = rand.Read(id)
		return deid.Key{ID: "random-" + hex.EncodeToString(id), Secret: secret}, nil
	}
	f, err := os.Open(path) //nolint:gosec // G304: the operator's --key-file
	if err != nil {
		return deid.Key{}, fmt.Errorf("key file: %w", err)
	}
	defer func() { _ = f.Close() }() // read only
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFileBytes+1))
	if err != nil {
		return deid.Key{}, fmt.Errorf("read key file: %w", err)
	}
	if len(data) > maxKeyFileBytes {
		return deid.Key{}, errors.New("key file: larger than 64 KiB")
	}
	if t := bytes.TrimSpace(data); len(t) > 0 && t[0] == '{' {
		var kf struct {
			ID     string `json:"id"`
			Secret string `json:"secret"`
		}
		dec := json.NewDecoder(bytes.NewReader(t))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&kf); err != nil {
			return deid.Key{}, errors.New(`key file: invalid JSON (want {"id": "...", "secret": "<base64>"})`)
		}
		secret, err := base64.StdEncoding.DecodeString(kf.Secret)
		if err != nil {
			return deid.Key{}, errors.New("key file: secret is not standard base64")
		}
		if kf.ID == "" {
			return deid.Key{}, errors.New("key file: id is empty")
		}
		if len(secret) < deid.MinSecretBytes {
			return deid.Key{}, fmt.Errorf("key file: secret must be at least %d bytes", deid.MinSecretBytes)
		}
		return deid.Key{ID: kf.ID, Secret: secret}, nil
	}
	if len(data) < deid.MinSecretBytes {
		return deid.Key{}, fmt.Errorf("key file: raw secret must be at least %d bytes", deid.MinSecretBytes)
	}
	sum := sha256.Sum256(data)
	return deid.Key{ID: "sha256:" + hex.EncodeToString(sum[:8]), Secret: data}, nil
}

// ndjsonToBundle wraps NDJSON (one resource a line, as `secondlook fetch` writes) in a collection Bundle;
// anything else is returned unchanged for Deidentify to judge.
func ndjsonToBundle(data []byte) []byte {
	trimmed := bytes.TrimSpace(data)
	lines := bytes.Split(trimmed, []byte("\n"))
	if len(lines) < 2 || !bytes.HasPrefix(bytes.TrimSpace(lines[0]), []byte("{")) || !bytes.HasSuffix(bytes.TrimSpace(lines[0]), []byte("}")) {
		return data
	}
	var b bytes.Buffer
	b.Grow(len(data) + 32*len(lines))
	b.WriteString(`{"resourceType":"Bundle","type":"collection","entry":[`)
	n := 0
	for _, l := range lines {
		l = bytes.TrimSpace(l)
		if len(l) == 0 {
			continue
		}
		if n > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`{"resource":`)
		b.Write(l)
		b.WriteByte('}')
		n++
	}
	b.WriteString("]}")
	return b.Bytes()
}
