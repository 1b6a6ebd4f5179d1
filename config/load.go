package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"strconv"

	"gopkg.in/yaml.v3"
)

// maxFileBytes bounds the config file; a real one is a few kilobytes.
const maxFileBytes = 1 << 20

// Load reads the YAML config file at path (or starts from an empty config if path is ""), applies the SECONDLOOK_*
// overrides found in environ (pass os.Environ()), fills defaults and validates the result.
//
// The file must be a single YAML document of at most 1 MiB; otherwise, or if it cannot be read or parsed, Load
// returns that error alone. Every other problem is collected and returned together as one wrapped *ValidationError
// (use errors.As): unknown keys and mistyped values in the file (each with its key path and line), then override
// problems, then validation problems. Validation sees the file as far as it decoded, so an unknown key is usually
// followed by a problem with the setting it was meant to be. On error the returned Config is nil.
func Load(path string, environ []string) (*Config, error) {
	what := "load config"
	if path != "" {
		what += " " + path
	}

	cfg := &Config{}
	var problems []Problem
	if path != "" {
		data, err := readFileLimited(path, maxFileBytes)
		if err != nil {
			return nil, fmt.Errorf("load config: %w", err)
		}
		problems, err = decodeFile(data, cfg)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
	}

	problems = append(problems, applyEnv(cfg, environ)...)
	cfg.ApplyDefaults()
	if err := cfg.Validate(); err != nil {
		var ve *ValidationError
		if !errors.As(err, &ve) {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		problems = append(problems, ve.Problems...)
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("%s: %w", what, &ValidationError{Problems: problems})
	}
	return cfg, nil
}

func readFileLimited(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path) //nolint:gosec // The config path is chosen by the operator.
	if err != nil {
		return nil, err
	}
	defer f.Close() //nolint:errcheck // Read-only file; a close error cannot lose data.
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("read %s: file is larger than the %d byte limit", path, limit)
	}
	return data, nil
}

// decodeFile decodes one YAML document into cfg. It first walks the document against cfg's type, so that every
// unknown key and mistyped value is reported with its key path and line (yaml.v3 stops at the first unknown key and
// gives no path). A clean document is then decoded with KnownFields(true). A document with problems is decoded
// leniently instead, leaving the zero value wherever a problem was found, and its problems are returned so Load can
// report them with everything else. Only a document that cannot be parsed, or more than one document, is an error.
func decodeFile(data []byte, cfg *Config) ([]Problem, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil // An empty file, or only comments: the empty config.
		}
		return nil, fmt.Errorf("parse yaml: %w", err)
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return nil, fmt.Errorf("parse yaml: %w", err)
	default:
		return nil, errors.New("parse yaml: the file holds more than one YAML document")
	}
	if len(doc.Content) == 0 {
		return nil, nil
	}

	var w shapeChecker
	w.check(doc.Content[0], reflect.TypeFor[Config](), "")

	strict := yaml.NewDecoder(bytes.NewReader(data))
	strict.KnownFields(len(w.problems) == 0)
	err := strict.Decode(cfg)
	var typeErr *yaml.TypeError
	switch {
	case err == nil:
	case len(w.problems) > 0 && errors.As(err, &typeErr):
		// Already reported, with paths, by the shape checker.
	case len(w.problems) > 0:
		return nil, &ValidationError{Problems: w.problems}
	default:
		return nil, fmt.Errorf("decode yaml: %w", err)
	}
	return w.problems, nil
}

// shapeChecker compares a YAML node tree with the Go type it will be decoded into.
type shapeChecker struct {
	problems []Problem
}

func (w *shapeChecker) add(path string, n *yaml.Node, msg string) {
	w.problems = append(w.problems, Problem{Path: path, Message: fmt.Sprintf("line %d: %s", n.Line, msg)})
}

func (w *shapeChecker) check(n *yaml.Node, t reflect.Type, path string) {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		return // Leaves the zero value, which ApplyDefaults may fill.
	}
	switch {
	case isSection(t):
		if n.Kind != yaml.MappingNode {
			w.add(path, n, "want a mapping")
			return
		}
		w.mapping(n, t, path)
	case t.Kind() == reflect.Slice && !isScalar(t):
		if n.Kind != yaml.SequenceNode {
			w.add(path, n, "want a list")
			return
		}
		for i, el := range n.Content {
			w.check(el, t.Elem(), path+"["+strconv.Itoa(i)+"]")
		}
	default:
		// Messages do not quote the value: it could be a secret typed into the wrong key.
		if n.Kind != yaml.ScalarNode {
			w.add(path, n, "want "+describeType(t))
			return
		}
		if err := n.Decode(reflect.New(t).Interface()); err != nil {
			w.add(path, n, "want "+describeType(t))
		}
	}
}

func (w *shapeChecker) mapping(n *yaml.Node, t reflect.Type, path string) {
	seen := make(map[string]int)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
			w.merge(v, t, path)
			continue
		}
		p := joinPath(path, k.Value)
		f, ok := fieldByYAMLName(t, k.Value)
		if !ok {
			w.add(p, k, "unknown key")
			continue
		}
		if first, dup := seen[k.Value]; dup {
			w.add(p, k, fmt.Sprintf("duplicate key (first at line %d)", first))
			continue
		}
		seen[k.Value] = k.Line
		w.check(v, f.Type, p)
	}
}

// merge checks the mappings merged in by a "<<" key; their keys belong to the enclosing mapping.
func (w *shapeChecker) merge(v *yaml.Node, t reflect.Type, path string) {
	for v.Kind == yaml.AliasNode && v.Alias != nil {
		v = v.Alias
	}
	switch v.Kind {
	case yaml.MappingNode:
		w.mapping(v, t, path)
	case yaml.SequenceNode:
		for _, el := range v.Content {
			w.merge(el, t, path)
		}
	default:
		w.add(path, v, "a merge key (<<) must refer to a mapping")
	}
}

func describeType(t reflect.Type) string {
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == reflect.TypeFor[Duration]() {
		return `a duration such as "30s"`
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "an integer in range"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a non-negative integer in range"
	case reflect.Float32, reflect.Float64:
		return "a number"
	}
	return "a value of type " + t.String()
}
