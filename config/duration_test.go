package config

import (
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

func TestDurationYAML(t *testing.T) {
	tests := []struct {
		yaml    string
		want    time.Duration
		wantErr bool
	}{
		{yaml: "d: 30s", want: 30 * time.Second},
		{yaml: `d: "1m30s"`, want: 90 * time.Second},
		{yaml: "d: 250ms", want: 250 * time.Millisecond},
		{yaml: "d: 0", want: 0},
		{yaml: "d: 30", wantErr: true},
		{yaml: "d: soon", wantErr: true},
		{yaml: "d: [1s]", wantErr: true},
		{yaml: "d: {s: 1}", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.yaml, func(t *testing.T) {
			var v struct {
				D Duration `yaml:"d"`
			}
			err := yaml.Unmarshal([]byte(tt.yaml), &v)
			if gotErr := err != nil; gotErr != tt.wantErr {
				t.Fatalf("Unmarshal error = %v, want error: %v", err, tt.wantErr)
			}
			if !tt.wantErr && time.Duration(v.D) != tt.want {
				t.Errorf("Unmarshal = %s, want %s", time.Duration(v.D), tt.want)
			}
		})
	}
}

func TestDurationText(t *testing.T) {
	var d Duration
	if err := d.UnmarshalText([]byte("1h2m")); err != nil {
		t.Fatalf("UnmarshalText: %v", err)
	}
	if want := Duration(time.Hour + 2*time.Minute); d != want {
		t.Errorf("UnmarshalText = %s, want %s", d, want)
	}
	text, err := d.MarshalText()
	if err != nil || string(text) != "1h2m0s" {
		t.Errorf("MarshalText = %q, %v; want \"1h2m0s\"", text, err)
	}
	out, err := yaml.Marshal(struct{ D Duration }{d})
	if err != nil || string(out) != "d: 1h2m0s\n" {
		t.Errorf("yaml.Marshal = %q, %v; want \"d: 1h2m0s\\n\"", out, err)
	}
	if err := d.UnmarshalText([]byte("90")); err == nil {
		t.Errorf("UnmarshalText(90) succeeded; want an error for a duration without a unit")
	}
}
