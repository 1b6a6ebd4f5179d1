package deid

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestScrubPatterns(t *testing.T) {
	m := newMatcher()
	for _, w := range []string{"todd315", "stamm704"} {
		addNameWord(m, w)
	}
	m.add(normalize("999-12-3456"), phiID, true, true)
	m.add(normalize("12040 NE 128TH STREET"), phiAddress, true, true)
	m.link()
	sc := scrubber{m: m, shift: 10, nowYear: 2026}
	cases := []struct{ in, want string }{
		{"Todd315 is a 7 year-old", "[NAME] is a 7 year-old"},
		{"todd and STAMM came", "[NAME] and [NAME] came"},
		{"Toddler Stammer", "Toddler Stammer"},
		{"SSN 999123456 or 999 12 3456", "SSN [ID] or [ID]"},
		{"lives at 12040 ne 128th street.", "lives at [ADDRESS]."},
		{"call (613) 555-0142 or 613.555.0199 or +1 613 555 0100", "call [PHONE] or [PHONE] or [PHONE]"},
		{"HCN 1234 567 890 AB today", "HCN [ID] today"},
		{"HCN 1234-567-890", "HCN [ID]"},
		{"RAMQ ABCD 1234 5678, ABCD12345678", "RAMQ [ID], [ID]"},
		{"PHN 9123 456 789; SIN 046-454-286", "PHN [ID]; SIN [ID]"},
		{"postal K1S 5B6, K1S5B6, k1s-5b6; FSA K1S", "postal [ADDRESS], [ADDRESS], [ADDRESS]; FSA K1S"},
		{"mail a.b+c@x.example.org now", "mail [EMAIL] now"},
		{"see https://x.example/a?b=1 and www.example.ca.", "see [URL] and [URL]"},
		{"from 10.0.0.12 at 09:30", "from [IP] at 09:30"},
		{"MRN 48213 and MRN: 1234", "MRN [ID] and MRN: [ID]"},
		{"token X12345678X and S99912345", "token [ID] and [ID]"},
		{"uuid 0ce18c7d-fd78-46d9-81b5-8bed231c337a", "uuid [ID]"},
		{"seen 2010-04-27 and 2010-04-27T02:24:38-07:00", "seen 2010-05-07 and 2010-05-07T02:24:38-07:00"},
		{"on 04/27/2010 and 27/04/2010 and 2010/04/27", "on 05/07/2010 and 07/05/2010 and 2010/05/07"},
		{"on April 27, 2010 and 27 April 2010 and Apr 2010", "on May 7, 2010 and 7 May 2010 and April 2010"},
		{"bad date 2010-02-30", "bad date [DATE]"},
		{"a 93 year-old, aged 91, 95 yo, 45 year-old", "a 90+ year-old, aged 90+, 90+ yo, 45 year-old"},
		{"BP 120/80, Hb 13.5 g/dL, 1,200 mL, LOINC 8302-2, 3 tablets", "BP 120/80, Hb 13.5 g/dL, 1,200 mL, LOINC 8302-2, 3 tablets"},
		{"on 04/27/10 and 27-Apr-2010 and 27-APR-10", "on 05/07/10 and 07-May-2010 and 07-May-10"},
		{"seen by Dr. Lavoie and Dr Amélie Roy; her son Luc Gagnon called", "seen by Dr. [NAME] and Dr [NAME] [NAME]; her son [NAME] [NAME] called"},
		{"Sa fille Chloé l'accompagne; Mme Tremblay", "Sa fille [NAME] l'accompagne; Mme [NAME]"},
		{"mother has diabetes; son is well", "mother has diabetes; son is well"},
		{"on Tuesday, April 27, 2010 (mardi)", "on [DAY], May 7, 2010 ([DAY])"},
		{"study 1.2.124.113532.9.55.1, class 1.2.840.10008.5.1.4.1.1.2, v1.2.3", "study 2.25.X, class 1.2.840.10008.5.1.4.1.1.2, v1.2.3"},
		{"", ""},
	}
	sc.uid = func(string) string { return "2.25.X" }
	for _, tc := range cases {
		got, _ := sc.scrub([]byte(tc.in))
		if diff := cmp.Diff(tc.want, string(got)); diff != "" {
			t.Errorf("scrub(%q) (-want +got):\n%s", tc.in, diff)
		}
	}
}

func TestScrubAge90BirthYear(t *testing.T) {
	m := newMatcher()
	m.link()
	sc := scrubber{m: m, shift: 10, birth: &fhirDate{y: 1931, m: 2, d: 3, prec: precDay}}
	got, _ := sc.scrub([]byte("born 1931, married 1955, DOB 1931-02-03 or 02/03/1931, seen 2025-03-04"))
	if want := "born [DATE], married 1955, DOB [DATE] or [DATE], seen 2025-03-14"; string(got) != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestShiftDates(t *testing.T) {
	cases := []struct {
		in    string
		shift int
		want  string
	}{
		{"2010-04-27", 10, "2010-05-07"},
		{"2010-12-27", 10, "2011-01-06"},
		{"2012-02-28", 1, "2012-02-29"},
		{"2010-04-27T02:24:38-07:00", -30, "2010-03-28T02:24:38-07:00"},
		{"2010-04-27T02:24:38.710Z", 365, "2011-04-27T02:24:38.710Z"},
		{"2010-04", 20, "2010-05"},
		{"2010-04", -14, "2010-04"},
		{"2010", 183, "2011"},
		{"2010", 182, "2010"},
	}
	for _, tc := range cases {
		fd, ok := parseFHIRDate([]byte(tc.in))
		if !ok {
			t.Fatalf("parse %q", tc.in)
		}
		if got := string(appendShifted(nil, fd, tc.shift)); got != tc.want {
			t.Errorf("shift(%q, %d) = %q, want %q", tc.in, tc.shift, got, tc.want)
		}
	}
	for _, bad := range []string{"2010-13-01", "2010-02-30", "2010-04-27T25:00:00Z", "2010-04-27T02:24", "201", "2010-4-27", "2010-04-27T02:24:38+0700"} {
		if _, ok := parseFHIRDate([]byte(bad)); ok && bad != "2010-04-27T02:24" {
			t.Errorf("parseFHIRDate(%q) accepted", bad)
		}
	}
}

func TestGeneralizePostal(t *testing.T) {
	cases := map[string]string{
		"K1S 5B6": "K1S", "k1s5b6": "K1S", "H2X-1Y4": "H2X", "98034": "980", "98034-1234": "980",
		"82310": "000", "03601": "000", "89301": "000", "3999": "", "SW1A 1AA": "", "D1A 1A1": "", "": "",
	}
	for in, want := range cases {
		if got := generalizePostal(in, ""); got != want {
			t.Errorf("generalizePostal(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestUIDAndPseudonym(t *testing.T) {
	k := newKeyer(testKey("u"), "s")
	u := k.uid("1.2.3")
	if u != k.uid("urn:oid:1.2.3") || len(u) > 64 || u[:5] != "2.25." {
		t.Errorf("uid %q", u)
	}
	for _, c := range u[5:] {
		if c < '0' || c > '9' {
			t.Fatalf("uid %q is not decimal", u)
		}
	}
	p := k.pseudonym("Patient/1")
	if len(p) != 36 || p[14] != '8' || p == k.pseudonym("Patient/2") {
		t.Errorf("pseudonym %q", p)
	}
	if newKeyer(testKey("v"), "s").pseudonym("Patient/1") == p || newKeyer(testKey("u"), "t").pseudonym("Patient/1") == p {
		t.Error("pseudonym not keyed by key and scope")
	}
}
