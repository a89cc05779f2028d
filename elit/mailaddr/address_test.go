package mailaddr

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	cases := []struct {
		in, want, canonical string // want "" means an error
	}{
		{"romain@example.org", "romain@example.org", "romain@example.org"},
		{"Romain@Example.ORG", "Romain@example.org", "romain@example.org"},
		{"a.b+tag@sub.example.org.", "a.b+tag@sub.example.org", "a.b+tag@sub.example.org"},
		{`"john doe"@example.org`, `"john doe"@example.org`, `"john doe"@example.org`},
		{`"bob"@example.org`, `"bob"@example.org`, "bob@example.org"},
		{`"a\"b"@example.org`, `"a\"b"@example.org`, `"a\"b"@example.org`},
		// Internationalised domains: written as they came, compared as
		// A-labels (RFC 5890 §2.3.2.1).
		{"δοκιμή@παράδειγμα.δοκιμή", "δοκιμή@παράδειγμα.δοκιμή", "δοκιμή@xn--hxajbheg2az3al.xn--jxalpdlp"},
		{"din@bücher.example", "din@bücher.example", "din@xn--bcher-kva.example"},
		{"Din@BÜCHER.Example", "Din@bücher.example", "din@xn--bcher-kva.example"},
		{"din@XN--BCHER-KVA.example", "din@xn--bcher-kva.example", "din@xn--bcher-kva.example"},
		{"a@faß.de", "a@faß.de", "a@xn--fa-hia.de"},                  // nontransitional: ß is not ss
		{"a@r3--sn.example", "a@r3--sn.example", "a@r3--sn.example"}, // LDH, not an A-label
		{"user@[192.0.2.1]", "user@[192.0.2.1]", "user@[192.0.2.1]"},
		{"user@[IPv6:2001:DB8::1]", "user@[IPv6:2001:db8::1]", "user@[IPv6:2001:db8::1]"},
		{"user@[ipv6:2001:db8::1]", "user@[IPv6:2001:db8::1]", "user@[IPv6:2001:db8::1]"},
		{"", "", ""},
		{"nodomain", "", ""},
		{"@example.org", "", ""},
		{"a..b@example.org", "", ""},
		{".a@example.org", "", ""},
		{"a.@example.org", "", ""},
		{"a b@example.org", "", ""},
		{`"unterminated@example.org`, "", ""},
		{"a@-example.org", "", ""},
		{"a@example..org", "", ""},
		{"a@exa_mple.org", "", ""},
		{"a@[300.0.0.1]", "", ""},
		{"a@[IPv6:::ffff:1.2.3.4]", "", ""},
		{"a@xn--a.example", "", ""},          // an A-label that decodes to ASCII
		{"a@xn--bcher-kva-.example", "", ""}, // ends with a hyphen
		{"a@\u0301x.example", "", ""},        // a U-label starting with a combining mark
		{"a@\u05d0a.example", "", ""},        // breaks the Bidi rule (RFC 5893)
		{"a\r\n@example.org", "", ""},
		{"a@example.org\n", "", ""},
		{"a\xff@example.org", "", ""},
		{strings.Repeat("a", 65) + "@example.org", "", ""},
		{"a@" + strings.Repeat("b", 64) + ".org", "", ""},
	}
	for _, c := range cases {
		a, err := Parse(c.in)
		switch {
		case c.want == "" && err == nil:
			t.Errorf("Parse(%q) = %q, want an error", c.in, a)
		case c.want != "" && err != nil:
			t.Errorf("Parse(%q): %v", c.in, err)
		case c.want != "" && (a.String() != c.want || a.Canonical() != c.canonical):
			t.Errorf("Parse(%q) = %q (canonical %q), want %q (%q)", c.in, a, a.Canonical(), c.want, c.canonical)
		}
	}
}

func TestCanonicalDomain(t *testing.T) {
	for _, c := range []struct{ in, want string }{ // want "" means an error
		{"example.org", "example.org"},
		{"Example.ORG.", "example.org"},
		{"bücher.example", "xn--bcher-kva.example"},
		{"BÜCHER.example.", "xn--bcher-kva.example"},
		{"xn--bcher-kva.example", "xn--bcher-kva.example"},
		{"XN--BCHER-KVA.EXAMPLE", "xn--bcher-kva.example"},
		{"ｂücher.example", "xn--bcher-kva.example"}, // full width b: mapped (UTS #46)
		{"παράδειγμα.δοκιμή", "xn--hxajbheg2az3al.xn--jxalpdlp"},
		{"[192.0.2.1]", "[192.0.2.1]"},
		{"[IPv6:2001:DB8::1]", "[IPv6:2001:db8::1]"},
		{"", ""},
		{"exa_mple.org", ""},
		{"xn--a.example", ""},
		{"[300.1.1.1]", ""},
		{"亜唖娃阿哀愛挨姶逢葵茜穐悪握渥旭葦芦鯵梓圧.example", ""}, // 63 octets, 69 as an A-label
	} {
		got, err := CanonicalDomain(c.in)
		switch {
		case c.want == "" && err == nil:
			t.Errorf("CanonicalDomain(%q) = %q, want an error", c.in, got)
		case c.want != "" && (err != nil || got != c.want):
			t.Errorf("CanonicalDomain(%q) = %q, %v, want %q", c.in, got, err, c.want)
		}
	}
}

// FuzzParse: no panics, and what parses prints as something that
// parses to the same address.
func FuzzParse(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		a, err := Parse(s)
		if err != nil {
			return
		}
		b, err := Parse(a.String())
		if err != nil || b != a {
			t.Fatalf("%q parsed as %q, which parses as %q, %v", s, a, b, err)
		}
		if c, err := Parse(a.Canonical()); err != nil || c.Canonical() != a.Canonical() {
			t.Fatalf("canonical %q of %q: %v", a.Canonical(), s, err)
		}
		if d, err := CanonicalDomain(a.Domain); err != nil || a.Canonical() != strings.ToLower(canonicalLocal(a.Local))+"@"+d {
			t.Fatalf("canonical domain %q of %q: %v", d, s, err)
		}
	})
}
