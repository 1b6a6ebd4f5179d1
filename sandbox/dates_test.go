package sandbox

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func ms(s string) int64 {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t.UnixMilli()
}

func TestParseDate(t *testing.T) {
	tests := []struct {
		in   string
		want span
	}{
		{"2015", span{ms("2015-01-01T00:00:00Z"), ms("2016-01-01T00:00:00Z")}},
		{"2015-02", span{ms("2015-02-01T00:00:00Z"), ms("2015-03-01T00:00:00Z")}},
		{"2015-12-31", span{ms("2015-12-31T00:00:00Z"), ms("2016-01-01T00:00:00Z")}},
		{"2015-02-03T04:05", span{ms("2015-02-03T04:05:00Z"), ms("2015-02-03T04:06:00Z")}},
		{"2015-02-03T04:05:06Z", span{ms("2015-02-03T04:05:06Z"), ms("2015-02-03T04:05:07Z")}},
		{"2015-02-03T04:05:06-07:00", span{ms("2015-02-03T11:05:06Z"), ms("2015-02-03T11:05:07Z")}},
		{"2015-02-03T04:05:06 07:00", span{ms("2015-02-02T21:05:06Z"), ms("2015-02-02T21:05:07Z")}},
		{"2015-02-03T04:05:06.7Z", span{ms("2015-02-03T04:05:06.7Z"), ms("2015-02-03T04:05:06.8Z")}},
		{"2015-02-03T04:05:06.710-07:00", span{ms("2015-02-03T11:05:06.710Z"), ms("2015-02-03T11:05:06.711Z")}},
		{"2015-02-03T04:05:06.123456Z", span{ms("2015-02-03T04:05:06.123Z"), ms("2015-02-03T04:05:06.124Z")}},
	}
	for _, tt := range tests {
		got, err := parseDate(tt.in)
		if err != nil {
			t.Errorf("parseDate(%q): %v", tt.in, err)
			continue
		}
		if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(span{})); diff != "" {
			t.Errorf("parseDate(%q) (-want +got):\n%s", tt.in, diff)
		}
	}
	for _, bad := range []string{"", "15", "2015-1", "2015-13", "2015-02-30", "2015-02-03T", "2015-02-03T4:05",
		"2015-02-03T24:00:00Z", "2015-02-03T04:05:06.Z", "2015T04:05", "20x5", "2015-02-03T04:05:06+25:00", "+015-01-01"} {
		if _, err := parseDate(bad); err == nil {
			t.Errorf("parseDate(%q) succeeded, want an error", bad)
		}
	}
}

func TestDateCriterionMatches(t *testing.T) {
	point := func(s string) span { sp, _ := parseDate(s); return sp }
	period := func(start, end string) span { sp, _ := parsePeriod(start, end); return sp }
	inDay := point("2015-06-15T10:00:00Z")
	before := point("2015-06-14T23:59:59Z")
	after := point("2015-06-16T00:00:00Z")
	spanning := period("2015-06-14T20:00:00Z", "2015-06-15T02:00:00Z")
	openEnded := period("2015-06-15T08:00:00Z", "")
	openStarted := period("", "2015-06-15T08:00:00Z")
	targets := []span{inDay, before, after, spanning, openEnded, openStarted}
	tests := []struct {
		value string
		want  []bool // per target, in the order above
	}{
		{"2015-06-15", []bool{true, false, false, false, false, false}},
		{"eq2015-06-15", []bool{true, false, false, false, false, false}},
		{"ne2015-06-15", []bool{false, true, true, true, true, true}},
		{"lt2015-06-15", []bool{false, true, false, true, false, true}},
		{"le2015-06-15", []bool{true, true, false, true, false, true}},
		{"gt2015-06-15", []bool{false, false, true, false, true, false}},
		{"ge2015-06-15", []bool{true, false, true, false, true, false}},
		{"sa2015-06-15", []bool{false, false, true, false, false, false}},
		{"eb2015-06-15", []bool{false, true, false, false, false, false}},
		{"2015", []bool{true, true, true, true, false, false}},
	}
	for _, tt := range tests {
		c, err := parseDateCriterion(tt.value)
		if err != nil {
			t.Fatalf("parseDateCriterion(%q): %v", tt.value, err)
		}
		var got []bool
		for _, target := range targets {
			got = append(got, c.matches(target))
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("%s over [inDay before after spanning openEnded openStarted] (-want +got):\n%s", tt.value, diff)
		}
	}
	for _, bad := range []string{"ap2015", "xx2015", "eq", "ge2015-13"} {
		if _, err := parseDateCriterion(bad); err == nil {
			t.Errorf("parseDateCriterion(%q) succeeded", bad)
		}
	}
	if _, ok := parsePeriod("", ""); ok {
		t.Error("an empty Period has a value")
	}
}
