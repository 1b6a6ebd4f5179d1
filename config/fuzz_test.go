package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// FuzzLoad loads a fuzzed config file with one fuzzed SECONDLOOK_ override, as `secondlook serve` does at start-up,
// seeded with the complete example. Properties: no panic; an error returns no Config and is a *ValidationError or a
// read/parse error; a config that loads validates again and passes ValidateForServe or fails it with problems only;
// and no error quotes a secret setting's value, from the file or from the override (a literal secret put where a
// reference belongs must not reach the log that reports the mistake).
func FuzzLoad(f *testing.F) {
	example, err := os.ReadFile("testdata/example.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(example, "LOG_LEVEL", "debug")
	f.Add(example, "SOURCES_ST_MARY_TIMEOUTS_REQUEST", "10s")
	f.Add(example, "KEYS_DEID_SECRET", "hunter2-literal-deid-secret-value")
	f.Add(example, "SOURCES_ST_MARY_AUTH_CLIENT_SECRET", "literal-client-secret-0123456789")
	f.Add(example, "NO_SUCH_SETTING", "some-value-never-quoted")
	f.Add([]byte("keys:\n  csrf: hunter2-literal-csrf-secret\nredis:\n  password: literal-redis-password\n"), "", "")
	f.Add([]byte("server: {addr: [1, 2]}\nsources:\n  - id: a\n  - id: a\n"), "SERVER_ADDR", "")
	f.Add([]byte("a: &x [*x]\n"), "", "")
	f.Add([]byte("---\n---\n"), "", "")
	secretKeys := secretYAMLKeys(reflect.TypeFor[Config](), map[string]bool{})
	f.Fuzz(func(t *testing.T, file []byte, envName, envValue string) {
		path := filepath.Join(t.TempDir(), "config.yaml")
		if err := os.WriteFile(path, file, 0o600); err != nil {
			t.Fatal(err)
		}
		environ := []string{EnvPrefix + envName + "=" + envValue}
		cfg, err := Load(path, environ)
		if err != nil {
			if cfg != nil {
				t.Fatal("Load returned a Config with an error")
			}
			for _, s := range secretValues(file, secretKeys) {
				if strings.Contains(err.Error(), s) {
					t.Fatalf("error quotes the secret setting value %q from the file", s)
				}
			}
			if len(envValue) >= 8 && overridesSecret(file, example, envName) && strings.Contains(err.Error(), envValue) {
				t.Fatalf("error quotes the value of the secret override %s", envName)
			}
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("a loaded config does not validate again: %v", err)
		}
		if err := cfg.ValidateForServe(); err != nil {
			var ve *ValidationError
			if !errors.As(err, &ve) || len(ve.Problems) == 0 {
				t.Fatalf("ValidateForServe: %T %v", err, err)
			}
		}
	})
}

// secretYAMLKeys returns the YAML keys of every SecretRef setting in t.
func secretYAMLKeys(t reflect.Type, out map[string]bool) map[string]bool {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Map {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return out
	}
	for i := range t.NumField() {
		fld := t.Field(i)
		name := yamlName(fld)
		if name == "" {
			continue
		}
		if fld.Type == reflect.TypeFor[SecretRef]() {
			out[name] = true
			continue
		}
		secretYAMLKeys(fld.Type, out)
	}
	return out
}

// secretValues returns the scalar values (8 bytes or more) under the secret keys of a YAML document.
func secretValues(file []byte, keys map[string]bool) []string {
	var doc yaml.Node
	if yaml.Unmarshal(file, &doc) != nil {
		return nil
	}
	var out []string
	var walk func(n *yaml.Node, depth int)
	walk = func(n *yaml.Node, depth int) {
		if n == nil || depth > 64 {
			return
		}
		if n.Kind == yaml.MappingNode {
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				if keys[k.Value] && v.Kind == yaml.ScalarNode && len(v.Value) >= 8 {
					out = append(out, v.Value)
				}
			}
		}
		for _, c := range n.Content {
			walk(c, depth+1)
		}
	}
	walk(&doc, 0)
	return out
}

// overridesSecret reports whether a SECONDLOOK_ override names a secret setting of the entries file defines (or,
// when file does not decode, of the example's).
func overridesSecret(file, example []byte, envName string) bool {
	var cfg Config
	if yaml.Unmarshal(file, &cfg) != nil {
		cfg = Config{}
		if yaml.Unmarshal(example, &cfg) != nil {
			return true
		}
	}
	var r envResolver
	for _, target := range r.resolve(reflect.ValueOf(&cfg).Elem(), envName, "") {
		if target.value.Type() == reflect.TypeFor[SecretRef]() {
			return true
		}
	}
	return false
}
