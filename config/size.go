package config

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
)

// sizeRE is the subset of Echo's size syntax (github.com/labstack/gommon/bytes) that ParseSize accepts.
var sizeRE = regexp.MustCompile(`(?i)^([0-9]+)(b|k|kb|ki|kib|m|mb|mi|mib)?$`)

// ParseSize parses a size as Echo's BodyLimit middleware does, so that the limit the gateway checks against and the
// limit Echo enforces agree: a whole number of bytes, optionally followed by K or KB (1000), M or MB (1000000),
// Ki or KiB (1024), Mi or MiB (1048576), or B, in any case. "1M" is therefore 1000000 bytes. Fractions, signs,
// spaces and larger units are rejected; the result is at least 0.
func ParseSize(s string) (int64, error) {
	m := sizeRE.FindStringSubmatch(s)
	if m == nil {
		return 0, fmt.Errorf("invalid size %q: want a whole number with an optional unit K, M, Ki or Mi, such as \"1M\"", s)
	}
	n, err := strconv.ParseInt(m[1], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("invalid size %q: out of range", s)
	}
	var unit int64 = 1
	switch strings.ToLower(m[2]) {
	case "k", "kb":
		unit = 1000
	case "ki", "kib":
		unit = 1 << 10
	case "m", "mb":
		unit = 1000 * 1000
	case "mi", "mib":
		unit = 1 << 20
	}
	if n > math.MaxInt64/unit {
		return 0, fmt.Errorf("invalid size %q: out of range", s)
	}
	return n * unit, nil
}
