package sandbox

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// span is the implicit range of a FHIR date, dateTime, instant or Period in Unix milliseconds: lo inclusive,
// hi exclusive. math.MinInt64 and math.MaxInt64 stand for an open start or end.
type span struct{ lo, hi int64 }

const (
	openStart = math.MinInt64
	openEnd   = math.MaxInt64
)

var errBadDate = errors.New("malformed date")

// parseDate returns the implicit range of a FHIR date/dateTime/instant: 2010 covers the whole year, 2010-04 the
// month, 2010-04-27 the day, and a time the second (or minute, or fraction) it names. Values without a time zone
// (dates, and times in search parameters) are read as UTC; this server has no other local time.
func parseDate(s string) (span, error) {
	datePart, timePart, hasTime := strings.Cut(s, "T")
	var (
		t    time.Time
		next func(time.Time) time.Time
		err  error
	)
	switch len(datePart) {
	case 4:
		t, err = time.Parse("2006", datePart)
		next = func(t time.Time) time.Time { return t.AddDate(1, 0, 0) }
	case 7:
		t, err = time.Parse("2006-01", datePart)
		next = func(t time.Time) time.Time { return t.AddDate(0, 1, 0) }
	case 10:
		t, err = time.Parse("2006-01-02", datePart)
		next = func(t time.Time) time.Time { return t.AddDate(0, 0, 1) }
	default:
		return span{}, errBadDate
	}
	if err != nil || !allDigitsOrDash(datePart) {
		return span{}, errBadDate
	}
	if !hasTime {
		return span{lo: t.UnixMilli(), hi: next(t).UnixMilli()}, nil
	}
	if len(datePart) != 10 {
		return span{}, errBadDate
	}
	return parseTime(t, timePart)
}

func allDigitsOrDash(s string) bool {
	for i := 0; i < len(s); i++ {
		if (s[i] < '0' || s[i] > '9') && s[i] != '-' {
			return false
		}
	}
	return true
}

// parseTime handles the part after 'T': hh:mm[:ss[.fraction]] followed by Z, ±hh:mm or nothing (UTC).
func parseTime(day time.Time, s string) (span, error) {
	loc := time.UTC
	switch {
	case strings.HasSuffix(s, "Z"):
		s = s[:len(s)-1]
	case len(s) >= 6 && strings.ContainsRune("+- ", rune(s[len(s)-6])) && s[len(s)-3] == ':':
		// A '+' decoded from an unescaped query string arrives as a space; read it as '+'.
		sign := 1
		if s[len(s)-6] == '-' {
			sign = -1
		}
		hh, err1 := strconv.Atoi(s[len(s)-5 : len(s)-3])
		mm, err2 := strconv.Atoi(s[len(s)-2:])
		if err1 != nil || err2 != nil || hh > 14 || mm > 59 {
			return span{}, errBadDate
		}
		loc = time.FixedZone("", sign*(hh*3600+mm*60))
		s = s[:len(s)-6]
	}
	clock, frac, hasFrac := strings.Cut(s, ".")
	parts := strings.Split(clock, ":")
	if len(parts) < 2 || len(parts) > 3 || (hasFrac && len(parts) != 3) {
		return span{}, errBadDate
	}
	var hms [3]int
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || len(p) != 2 {
			return span{}, errBadDate
		}
		hms[i] = n
	}
	if hms[0] > 23 || hms[1] > 59 || hms[2] > 60 {
		return span{}, errBadDate
	}
	width := time.Minute
	if len(parts) == 3 {
		width = time.Second
	}
	nanos := 0
	if hasFrac {
		if frac == "" || len(frac) > 9 {
			return span{}, errBadDate
		}
		n, err := strconv.Atoi(frac)
		if err != nil || n < 0 {
			return span{}, errBadDate
		}
		nanos = n * int(math.Pow10(9-len(frac)))
		width = time.Duration(math.Pow10(9 - len(frac)))
	}
	t := time.Date(day.Year(), day.Month(), day.Day(), hms[0], hms[1], hms[2], nanos, loc)
	lo := t.UnixMilli()
	w := width.Milliseconds()
	if w < 1 {
		w = 1
	}
	return span{lo: lo, hi: lo + w}, nil
}

// parsePeriod turns a Period's start and end into one span; a missing side is open. Both missing (or unparsable)
// means the resource has no value for the parameter.
func parsePeriod(start, end string) (span, bool) {
	sp := span{lo: openStart, hi: openEnd}
	if start != "" {
		s, err := parseDate(start)
		if err != nil {
			return span{}, false
		}
		sp.lo = s.lo
	}
	if end != "" {
		e, err := parseDate(end)
		if err != nil {
			return span{}, false
		}
		sp.hi = e.hi
	}
	if start == "" && end == "" {
		return span{}, false
	}
	return sp, true
}

// datePrefix is a FHIR search comparator for date parameters.
type datePrefix string

const (
	prefixEq datePrefix = "eq"
	prefixNe datePrefix = "ne"
	prefixLt datePrefix = "lt"
	prefixGt datePrefix = "gt"
	prefixLe datePrefix = "le"
	prefixGe datePrefix = "ge"
	prefixSa datePrefix = "sa"
	prefixEb datePrefix = "eb"
)

// dateCriterion is one comma-separated value of a date search parameter.
type dateCriterion struct {
	prefix datePrefix
	param  span
}

func parseDateCriterion(v string) (dateCriterion, error) {
	p := prefixEq
	if len(v) >= 2 && v[0] >= 'a' && v[0] <= 'z' {
		switch datePrefix(v[:2]) {
		case prefixEq, prefixNe, prefixLt, prefixGt, prefixLe, prefixGe, prefixSa, prefixEb:
			p = datePrefix(v[:2])
			v = v[2:]
		default:
			return dateCriterion{}, fmt.Errorf("unsupported date prefix %q", v[:2])
		}
	}
	sp, err := parseDate(v)
	if err != nil {
		return dateCriterion{}, err
	}
	return dateCriterion{prefix: p, param: sp}, nil
}

// matches applies FHIR R4's range semantics (search.html#prefix): the parameter's implicit range against the
// target's implicit range.
func (c dateCriterion) matches(target span) bool {
	p := c.param
	contains := p.lo <= target.lo && target.hi <= p.hi
	switch c.prefix {
	case prefixNe:
		return !contains
	case prefixGt: // the range above the parameter intersects the target
		return target.hi > p.hi
	case prefixLt: // the range below the parameter intersects the target
		return target.lo < p.lo
	case prefixGe:
		return target.hi > p.hi || contains
	case prefixLe:
		return target.lo < p.lo || contains
	case prefixSa: // no overlap, and the target lies after the parameter
		return target.lo >= p.hi
	case prefixEb:
		return target.hi <= p.lo
	default:
		return contains
	}
}
