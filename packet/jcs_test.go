package packet

import "testing"

// Vectors from RFC 8785 (sections 3.2.2 and 3.2.3, and the number table of appendix B).
func TestCanonicalize(t *testing.T) {
	tests := []struct{ in, want string }{
		{`{"numbers":[333333333.33333329,1E30,4.50,2e-3,0.000000000000000000000000001],"string":"\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/","literals":[null,true,false]}`,
			`{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}`},
		{`{"\u20ac":"Euro Sign","\r":"Carriage Return","\ufb33":"Hebrew Letter Dalet With Dagesh","1":"One","\ud83d\ude00":"Emoji: Grinning Face","\u0080":"Control","\u00f6":"Latin Small Letter O With Diaeresis"}`,
			"{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\u0080\":\"Control\",\"\u00f6\":\"Latin Small Letter O With Diaeresis\",\"\u20ac\":\"Euro Sign\",\"\U0001F600\":\"Emoji: Grinning Face\",\"\ufb33\":\"Hebrew Letter Dalet With Dagesh\"}"},
		{`[1e21, 1e-7, -0, 123456789012345680000, 0.000001, 9007199254740993]`, `[1e+21,1e-7,0,123456789012345680000,0.000001,9007199254740992]`},
		{` { "b" : [ ] , "a" : { } } `, `{"a":{},"b":[]}`},
	}
	for _, tc := range tests {
		for name, f := range map[string]func([]byte) ([]byte, error){"jsontext": canonicalize, "reference": canonicalizeSlow} {
			got, err := f([]byte(tc.in))
			if err != nil {
				t.Fatalf("%s %s: %v", name, tc.in, err)
			}
			if string(got) != tc.want {
				t.Errorf("%s(%s)\n got %s\nwant %s", name, tc.in, got, tc.want)
			}
		}
	}
	if _, err := canonicalizeSlow([]byte(`{"a":1e400}`)); err == nil {
		t.Error("1e400 accepted")
	}
}
