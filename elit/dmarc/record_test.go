package dmarc

import (
	"reflect"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	defaults := func(r Record) *Record {
		if r.ADKIM == "" {
			r.ADKIM = Relaxed
		}
		if r.ASPF == "" {
			r.ASPF = Relaxed
		}
		if r.Percent == 0 {
			r.Percent = 100
		}
		if r.FailureOptions == nil {
			r.FailureOptions = []string{"0"}
		}
		if r.ReportFormats == nil {
			r.ReportFormats = []string{"afrf"}
		}
		if r.Interval == 0 {
			r.Interval = 86400
		}
		return &r
	}
	for _, tc := range []struct {
		txt  string
		want *Record // nil: an error
	}{
		{"v=DMARC1; p=none", defaults(Record{Policy: PolicyNone})},
		{"v=DMARC1;p=reject;", defaults(Record{Policy: Reject})},
		{"v = DMARC1 ; p = Quarantine ; SP=reject; adkim=s; aspf=S; pct=0; ri=3600; fo=1:d; rf=afrf:iodef",
			defaults(Record{Policy: Quarantine, SubdomainPolicy: Reject, ADKIM: Strict, ASPF: Strict, Percent: 0, Interval: 3600,
				FailureOptions: []string{"1", "d"}, ReportFormats: []string{"afrf", "iodef"}})},
		// pct=0 is kept: defaults() only fills 0 for an absent one, so
		// this case checks Percent separately below.
		{"v=DMARC1; p=reject; rua=mailto:agg@example.com!10m, https://r.example.net/dmarc; ruf=mailto:f@example.com",
			defaults(Record{Policy: Reject, RUA: []URI{{"mailto:agg@example.com", 10 << 20}, {"https://r.example.net/dmarc", 0}},
				RUF: []URI{{"mailto:f@example.com", 0}}})},
		{"v=DMARC1; p=none; future=whatever you like", defaults(Record{Policy: PolicyNone})},
		// §6.6.3: no valid p= but a valid rua=: p=none.
		{"v=DMARC1; rua=mailto:d@example.com", defaults(Record{Policy: PolicyNone, NoPolicy: true, RUA: []URI{{"mailto:d@example.com", 0}}})},
		{"v=DMARC1; p=bogus; rua=mailto:d@example.com", defaults(Record{Policy: PolicyNone, NoPolicy: true, RUA: []URI{{"mailto:d@example.com", 0}}})},
		{"v=DMARC1; p=reject; sp=bogus; rua=mailto:d@example.com", defaults(Record{Policy: PolicyNone, NoPolicy: true, RUA: []URI{{"mailto:d@example.com", 0}}})},
		{"v=DMARC1", nil},
		{"v=DMARC1; p=bogus", nil},
		{"v=DMARC1; p=reject; sp=bogus", nil},
		{"v=DMARC1; sp=reject", nil},
		{"p=reject; v=DMARC1", nil},
		{"v=dmarc1; p=reject", nil},
		{"v=DMARC1p=reject", nil},
		{"v=DMARC1; p=reject; pct=101", nil},
		{"v=DMARC1; p=reject; pct=abc", nil},
		{"v=DMARC1; p=reject; pct=-1", nil},
		{"v=DMARC1; p=reject; adkim=x", nil},
		{"v=DMARC1; p=reject; ri=99999999999", nil},
		{"v=DMARC1; p=reject; fo=2", nil},
		{"v=DMARC1; p=reject; rua=agg@example.com", nil},
		{"v=DMARC1; p=reject; rua=mailto:a@example.com!x", nil},
		{"v=DMARC1; p=reject; p=none", nil},
		{"v=DMARC1; p=reject;; pct=50", nil},
		{"v=DMARC1; p=reject; 1x=y", nil},
		{"v=DMARC1; p=reject; v=DMARC1", nil},
		{"v=DMARC1; p=reject; novalue", nil},
	} {
		got, err := Parse(tc.txt)
		if tc.want == nil {
			if err == nil {
				t.Errorf("Parse(%q) = %+v, want an error", tc.txt, got)
			}
			continue
		}
		if strings.Contains(tc.txt, "pct=0") {
			tc.want.Percent = 0
		}
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Parse(%q)\n= %+v, %v\nwant %+v", tc.txt, got, err, tc.want)
		}
	}
}

// FuzzParse: no panic; a record that parses has a policy, values in
// range, and a record that names no rua= and no valid p= does not parse.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"v=DMARC1; p=none",
		"v=DMARC1; p=reject; sp=quarantine; adkim=s; aspf=r; pct=50; rua=mailto:a@example.com!10m; ruf=mailto:f@example.com; fo=0:1:d:s; rf=afrf; ri=86400",
		"v=DMARC1; rua=mailto:d@example.com",
		"v=DMARC1; p=reject;; x=y",
		"v=DMARC1;p=quarantine;pct=033;",
		"v=DMARC1; p=reject; rua=https://example.com/a,b",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, txt string) {
		rec, err := Parse(txt)
		if err != nil {
			return
		}
		switch rec.Policy {
		case PolicyNone, Quarantine, Reject:
		default:
			t.Fatalf("%q: policy %q", txt, rec.Policy)
		}
		switch rec.SubdomainPolicy {
		case "", PolicyNone, Quarantine, Reject:
		default:
			t.Fatalf("%q: sp %q", txt, rec.SubdomainPolicy)
		}
		if rec.Percent < 0 || rec.Percent > 100 || (rec.ADKIM != Relaxed && rec.ADKIM != Strict) || (rec.ASPF != Relaxed && rec.ASPF != Strict) {
			t.Fatalf("%q: %+v", txt, rec)
		}
		if rec.NoPolicy && len(rec.RUA) == 0 {
			t.Fatalf("%q: p=none without rua=", txt)
		}
		if !hasVersion(txt) {
			t.Fatalf("%q parses without v=DMARC1", txt)
		}
	})
}
