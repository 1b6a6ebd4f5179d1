package config

import (
	"fmt"
	"time"

	"gopkg.in/yaml.v3"
)

// Duration is a time.Duration written as a Go duration string ("30s", "1m30s") in YAML and in environment
// overrides. A bare number is rejected rather than read as nanoseconds, which is what yaml.v3 would otherwise do.
type Duration time.Duration

// String formats d like time.Duration, so printed configs read as they are written.
func (d Duration) String() string { return time.Duration(d).String() }

// MarshalText writes d as a duration string, so encoders emit what the decoder accepts.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText parses a Go duration string; environment overrides use it.
func (d *Duration) UnmarshalText(text []byte) error {
	v, err := parseDuration(string(text))
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// UnmarshalYAML parses a scalar Go duration string. Its error is a *yaml.TypeError, so that yaml.v3 carries on
// decoding the rest of the document, as it does for its own type mismatches.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: want a duration such as \"30s\"", n.Line)}}
	}
	v, err := parseDuration(n.Value)
	if err != nil {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %v", n.Line, err)}}
	}
	*d = v
	return nil
}

func parseDuration(s string) (Duration, error) {
	v, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q: want a number with a unit, such as \"30s\"", s)
	}
	return Duration(v), nil
}
