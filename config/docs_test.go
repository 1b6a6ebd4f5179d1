package config

import (
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// settingPaths lists every setting under t as documented: lists of sections as "name[]", sections themselves too.
func settingPaths(t reflect.Type, prefix string) []string {
	var out []string
	for i := range t.NumField() {
		f := t.Field(i)
		name := strings.Split(f.Tag.Get("yaml"), ",")[0]
		path := name
		if prefix != "" {
			path = prefix + "." + name
		}
		switch {
		case f.Type == reflect.TypeFor[Duration]():
			out = append(out, path)
		case f.Type.Kind() == reflect.Struct:
			out = append(out, settingPaths(f.Type, path)...)
		case f.Type.Kind() == reflect.Slice && f.Type.Elem().Kind() == reflect.Struct:
			out = append(out, settingPaths(f.Type.Elem(), path+"[]")...)
		default:
			out = append(out, path)
		}
	}
	return out
}

// yamlPaths lists the key paths present in a YAML node, lists of mappings as "name[]".
func yamlPaths(n *yaml.Node, prefix string, out map[string]bool) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			yamlPaths(c, prefix, out)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			p := n.Content[i].Value
			if prefix != "" {
				p = prefix + "." + p
			}
			out[p] = true
			yamlPaths(n.Content[i+1], p, out)
		}
	case yaml.SequenceNode:
		for _, c := range n.Content {
			if c.Kind == yaml.MappingNode {
				yamlPaths(c, prefix+"[]", out)
			}
		}
	}
}

func TestExampleSetsEverySetting(t *testing.T) {
	data, err := os.ReadFile(examplePath)
	if err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	present := map[string]bool{}
	yamlPaths(&doc, "", present)
	for _, p := range settingPaths(reflect.TypeFor[Config](), "") {
		if !present[p] {
			t.Errorf("%s does not show setting %s", examplePath, p)
		}
	}
}

func TestDocsDescribeEverySetting(t *testing.T) {
	const docPath = "../docs/configuration.md"
	data, err := os.ReadFile(docPath)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(data)
	for _, p := range settingPaths(reflect.TypeFor[Config](), "") {
		if !strings.Contains(doc, "| `"+p+"` |") {
			t.Errorf("%s has no table row for setting %s", docPath, p)
		}
	}
	example, err := os.ReadFile(examplePath)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(doc, "```yaml\n"+string(example)+"```") {
		t.Errorf("%s does not include %s verbatim; copy it again", docPath, examplePath)
	}
	for _, name := range []string{"SECONDLOOK_CALLERS_ISSUERS_<ID>_CLIENTS_<CLIENTID>_NAME", "SECONDLOOK_KEYS_TOKEN_ENCRYPTION_<ID>_SECRET"} {
		if !strings.Contains(doc, name) {
			t.Errorf("%s does not mention %s", docPath, name)
		}
	}
	if slices.Contains(settingPaths(reflect.TypeFor[Config](), ""), "") {
		t.Error("a setting has an empty path")
	}
}
