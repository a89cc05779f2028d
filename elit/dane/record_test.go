package dane

import (
	"bytes"
	"crypto/x509"
	"strings"
	"testing"

	"elit.local/elit/dns"
)

func TestParse(t *testing.T) {
	sha := strings.Repeat("ab", 32)
	for _, tc := range []struct {
		in     string
		want   string // String of the record; "" for an error
		usable bool
	}{
		{"3 1 1 " + sha, "3 1 1 " + sha, true},
		{"3 1 1 " + strings.ToUpper(sha[:32]) + " " + sha[32:], "3 1 1 " + sha, true}, // data split, upper case
		{"2 0 2 " + sha + sha, "2 0 2 " + sha + sha, true},
		{"3 0 0 3082", "3 0 0 3082", true},
		{"1 1 1 " + sha, "1 1 1 " + sha, false}, // PKIX-EE
		{"0 0 1 " + sha, "0 0 1 " + sha, false}, // PKIX-TA
		{"4 1 1 " + sha, "4 1 1 " + sha, false},
		{"3 2 1 " + sha, "3 2 1 " + sha, false},
		{"3 1 3 " + sha, "3 1 3 " + sha, false},
		{"3 1 1 abcd", "3 1 1 abcd", false}, // too short for SHA-256
		{"3 1 2 " + sha, "3 1 2 " + sha, false},
		{"3 1 1", "", false},
		{"3 1 1 xyz0", "", false},
		{"3 1 1 abc", "", false},
		{"256 1 1 " + sha, "", false},
		{"-1 1 1 " + sha, "", false},
		{"", "", false},
	} {
		r, err := Parse(tc.in)
		if tc.want == "" {
			if err == nil {
				t.Errorf("Parse(%q) = %v, want an error", tc.in, r)
			}
			continue
		}
		if err != nil || r.String() != tc.want {
			t.Errorf("Parse(%q) = %v %v, want %s", tc.in, r, err, tc.want)
			continue
		}
		if err := Usable(r); (err == nil) != tc.usable {
			t.Errorf("Usable(%s) = %v, want usable %v", tc.in, err, tc.usable)
		}
	}
}

// TestRecordKnown: the 3 1 1 record is the SHA-256 of the certificate's
// SubjectPublicKeyInfo (RFC 6698 §2.1.2), checked against a digest
// computed apart.
func TestRecordKnown(t *testing.T) {
	p := newPKI(t)
	r := Record(p.leaf, UsageDANEEE, SelectorSPKI, MatchSHA256)
	full := Record(p.leaf, UsageDANEEE, SelectorSPKI, MatchFull)
	if !bytes.Equal(full.Data, p.leaf.RawSubjectPublicKeyInfo) || len(r.Data) != 32 || Usable(r) != nil {
		t.Fatalf("records %v %v", r, full)
	}
	if Record(p.leaf, 3, 7, 1).Data != nil || Record(p.leaf, 3, 1, 9).Data != nil {
		t.Error("unknown selector or matching type: data")
	}
	back, err := Parse(r.String())
	if err != nil || back.String() != r.String() {
		t.Errorf("round trip: %v %v", back, err)
	}
}

// FuzzParse: whatever Parse accepts prints as a record that parses to
// the same, and Verify of it never panics.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"3 1 1 " + strings.Repeat("ab", 32),
		"2 0 0 3082010a",
		"3 1 2 " + strings.Repeat("0", 128),
		"0 0 0 00",
		"3 1 1",
		"255 255 255 ff ff",
	} {
		f.Add(s)
	}
	p := newPKI(f)
	f.Fuzz(func(t *testing.T, s string) {
		r, err := Parse(s)
		if err != nil {
			return
		}
		back, err := Parse(r.String())
		if err != nil || back.String() != r.String() {
			t.Fatalf("%q: %v does not round-trip: %v %v", s, r, back, err)
		}
		Usable(r)
		Verify([]dns.TLSA{r}, []*x509.Certificate{p.leaf, p.inter}, []string{"mx.example.com"}, testNow)
	})
}
