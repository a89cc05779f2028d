package tlsrpt

import (
	"context"
	"errors"
	"testing"

	"elit.local/elit/dns"
)

// TestParseRecord: the record's grammar (RFC 8460 §3), strictly.
func TestParseRecord(t *testing.T) {
	for _, c := range []struct {
		in   string
		rua  []string // nil: refused
		exts int
	}{
		{"v=TLSRPTv1; rua=mailto:reports@example.com", []string{"mailto:reports@example.com"}, 0},
		{"v=TLSRPTv1;rua=https://reporting.example.com/v1/tlsrpt", []string{"https://reporting.example.com/v1/tlsrpt"}, 0},
		{"v=TLSRPTv1; rua=mailto:a@example.com , https://r.example/x ;", []string{"mailto:a@example.com", "https://r.example/x"}, 0},
		{"v=TLSRPTv1 ; rua=mailto:a@example.com; ext.1=v-9", []string{"mailto:a@example.com"}, 1},
		{"v=TLSRPTv1; rua=mailto:a@example.com?subject=tls", []string{"mailto:a@example.com?subject=tls"}, 0},
		{"v=TLSRPTv1; rua=mailto:a%2Bx@example.com", []string{"mailto:a%2Bx@example.com"}, 0},
		{"v=TLSRPTv1; rua=ftp://example.com/x", []string{"ftp://example.com/x"}, 0}, // kept, not used
		{"", nil, 0},
		{"v=TLSRPTv1", nil, 0},
		{"v=TLSRPTv1;", nil, 0},
		{"v=tlsrptv1; rua=mailto:a@example.com", nil, 0}, // %s: case-sensitive
		{" v=TLSRPTv1; rua=mailto:a@example.com", nil, 0},
		{"v=TLSRPTv2; rua=mailto:a@example.com", nil, 0},
		{"v=TLSRPTv1; RUA=mailto:a@example.com", nil, 0}, // an extension, and no rua
		{"v=TLSRPTv1; rua=mailto:a@example.com; rua=mailto:b@example.com", nil, 0},
		{"v=TLSRPTv1; rua=", nil, 0},
		{"v=TLSRPTv1; rua=mailto:a@example.com,", nil, 0},
		{"v=TLSRPTv1; rua=reports@example.com", nil, 0},
		{"v=TLSRPTv1; rua=mailto:not an address", nil, 0},
		{"v=TLSRPTv1; rua=mailto:a@example.com!10m", nil, 0},
		{"v=TLSRPTv1; rua=https:///nohost", nil, 0},
		{"v=TLSRPTv1; rua=mailto:a@example.com;; x=y", nil, 0},
		{"v=TLSRPTv1; rua=mailto:a@example.com; x=", nil, 0},
		{"v=TLSRPTv1; rua=mailto:a@example.com; _x=y", nil, 0},
		{"v=TLSRPTv1; rua=mailto:a@example.com; abcdefghijabcdefghijabcdefghijabc=y", nil, 0},
		{"v=TLSRPTv1; rua=mailto:a@example.com; x=a=b", nil, 0},
	} {
		r, err := ParseRecord(c.in)
		if c.rua == nil {
			if err == nil {
				t.Errorf("%q: parsed as %v", c.in, r)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", c.in, err)
			continue
		}
		var got []string
		for _, u := range r.RUA {
			got = append(got, u.String())
		}
		if len(got) != len(c.rua) || len(r.Extensions) != c.exts {
			t.Errorf("%q: rua %q, extensions %q", c.in, got, r.Extensions)
		}
		for i := range got {
			if got[i] != c.rua[i] {
				t.Errorf("%q: rua %q, want %q", c.in, got, c.rua)
			}
		}
		again, err := ParseRecord(r.String())
		if err != nil || again.String() != r.String() {
			t.Errorf("%q: written as %q, which reads back as %v, %v", c.in, r.String(), again, err)
		}
	}
}

// TestOwnRecord: the record we publish parses, and names our address.
func TestOwnRecord(t *testing.T) {
	rec := OwnRecord("tls+rpt@example.org")
	r, err := ParseRecord(rec)
	if err != nil || len(r.RUA) != 1 {
		t.Fatalf("%q: %v", rec, err)
	}
	if a, err := MailtoAddress(r.RUA[0]); err != nil || a != "tls+rpt@example.org" {
		t.Errorf("%q names %q, %v", rec, a, err)
	}
	if RecordName("example.org.") != "_smtp._tls.example.org" {
		t.Error(RecordName("example.org."))
	}
}

// TestLookup: of a name's TXT records only those starting with the
// version count, and exactly one must (RFC 8460 §3).
func TestLookup(t *testing.T) {
	r := &dns.Mem{TXTs: map[string][]string{
		"_smtp._tls.one.example":   {"v=spf1 -all", "v=TLSRPTv1; rua=mailto:r@one.example"},
		"_smtp._tls.two.example":   {"v=TLSRPTv1; rua=mailto:a@two.example", "v=TLSRPTv1; rua=mailto:b@two.example"},
		"_smtp._tls.bad.example":   {"v=TLSRPTv1; rua=nowhere"},
		"_smtp._tls.other.example": {"v=TLSRPTv10; rua=mailto:r@other.example"},
	}, Fail: map[string]error{"_smtp._tls.down.example": errors.New("SERVFAIL")}}
	for _, c := range []struct {
		domain string
		err    error // nil: found
	}{
		{"one.example", nil},
		{"two.example", ErrNoRecord},
		{"other.example", ErrNoRecord},
		{"none.example", ErrNoRecord},
		{"down.example", dns.ErrTemporary},
	} {
		rec, err := Lookup(context.Background(), r, c.domain)
		if c.err == nil && (err != nil || rec.RUA[0].String() != "mailto:r@one.example") || c.err != nil && !errors.Is(err, c.err) {
			t.Errorf("%s: %v, %v", c.domain, rec, err)
		}
	}
	if _, err := Lookup(context.Background(), r, "bad.example"); err == nil || errors.Is(err, ErrNoRecord) || errors.Is(err, dns.ErrTemporary) {
		t.Errorf("a bad record: %v", err)
	}
}

// FuzzParseRecord: any text parses or is refused without a panic, and
// what parses is written so that it parses the same.
func FuzzParseRecord(f *testing.F) {
	for _, s := range []string{"v=TLSRPTv1; rua=mailto:reports@example.com", "v=TLSRPTv1;rua=https://r.example/v1,mailto:a@b.example; x.y=z;",
		"v=TLSRPTv1; rua=mailto:a%2Cb@example.com"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRecord(s)
		if err != nil {
			return
		}
		again, err := ParseRecord(r.String())
		if err != nil || again.String() != r.String() {
			t.Fatalf("%q written as %q: %v", s, r.String(), err)
		}
	})
}
