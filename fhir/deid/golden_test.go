package deid

import (
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-json-experiment/json/jsontext"
	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

// goldenNow fixes the clock of the age rule so goldens do not change with the calendar.
func goldenNow() time.Time { return time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC) }

func goldenOptions(tb testing.TB) Options {
	return Options{Profile: mustProfile(tb), Key: testKey("golden"), Scope: "review-golden", Now: goldenNow}
}

// TestGolden de-identifies every input copied from ../shared/fhir-data (and the adversarial records written
// for this package) and compares bundle and report with the reviewed goldens. Run with -update to rewrite them.
func TestGolden(t *testing.T) {
	inputs, err := filepath.Glob("testdata/*/*.json")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, in := range inputs {
		dir := filepath.Base(filepath.Dir(in))
		if dir == "golden" {
			continue
		}
		n++
		name := dir + "/" + strings.TrimSuffix(filepath.Base(in), ".json")
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			got := goldenRun(t, data)
			path := filepath.Join("testdata", "golden", name+".golden.json")
			if *update {
				if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, got, 0o600); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("missing golden (run go test -run TestGolden -update): %v", err)
			}
			if diff := cmp.Diff(string(want), string(got)); diff != "" {
				t.Errorf("golden mismatch (-want +got):\n%s", diff)
			}
		})
	}
	if n < 20 {
		t.Fatalf("only %d golden inputs found", n)
	}
}

// goldenRun returns the indented output Bundle and report (or the error) as one JSON document.
func goldenRun(t *testing.T, data []byte) []byte {
	t.Helper()
	res, err := Deidentify(data, goldenOptions(t))
	doc := map[string]any{}
	if err != nil {
		var ie *InputError
		var re *ResidualError
		switch {
		case errors.As(err, &ie), errors.As(err, &re):
			doc["error"] = err.Error()
		default:
			t.Fatalf("unexpected error type %T: %v", err, err)
		}
	} else {
		doc["bundle"] = jsontext.Value(res.Bundle)
		doc["report"] = res.Report
	}
	raw, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	v := jsontext.Value(raw)
	if err := v.Indent(jsontext.WithIndent(" ")); err != nil {
		t.Fatal(err)
	}
	return append(v, '\n')
}
