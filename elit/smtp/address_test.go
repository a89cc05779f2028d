package smtp

import (
	"strings"
	"testing"
)

func TestParseAddress(t *testing.T) {
	cases := []struct {
		in, want, canonical string // want "" means an error
	}{
		{"romain@example.org", "romain@example.org", "romain@example.org"},
		{"Romain@Example.ORG", "Romain@example.org", "romain@example.org"},
		{"a.b+tag@sub.example.org.", "a.b+tag@sub.example.org", "a.b+tag@sub.example.org"},
		{`"john doe"@example.org`, `"john doe"@example.org`, `"john doe"@example.org`},
		{`"bob"@example.org`, `"bob"@example.org`, "bob@example.org"},
		{`"a\"b"@example.org`, `"a\"b"@example.org`, `"a\"b"@example.org`},
		{"δοκιμή@παράδειγμα.δοκιμή", "δοκιμή@παράδειγμα.δοκιμή", "δοκιμή@παράδειγμα.δοκιμή"},
		{"user@[192.0.2.1]", "user@[192.0.2.1]", "user@[192.0.2.1]"},
		{"user@[IPv6:2001:DB8::1]", "user@[IPv6:2001:db8::1]", "user@[IPv6:2001:db8::1]"},
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
		{"a\r\n@example.org", "", ""},
		{"a@example.org\n", "", ""},
		{"a\xff@example.org", "", ""},
		{strings.Repeat("a", 65) + "@example.org", "", ""},
		{"a@" + strings.Repeat("b", 64) + ".org", "", ""},
	}
	for _, c := range cases {
		a, err := ParseAddress(c.in)
		switch {
		case c.want == "" && err == nil:
			t.Errorf("ParseAddress(%q) = %q, want an error", c.in, a)
		case c.want != "" && err != nil:
			t.Errorf("ParseAddress(%q): %v", c.in, err)
		case c.want != "" && (a.String() != c.want || a.Canonical() != c.canonical):
			t.Errorf("ParseAddress(%q) = %q (canonical %q), want %q (%q)", c.in, a, a.Canonical(), c.want, c.canonical)
		}
	}
}

// FuzzParseAddress: no panics, and what parses prints as something that
// parses to the same address.
func FuzzParseAddress(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		a, err := ParseAddress(s)
		if err != nil {
			return
		}
		b, err := ParseAddress(a.String())
		if err != nil || b != a {
			t.Fatalf("%q parsed as %q, which parses as %q, %v", s, a, b, err)
		}
		if c, err := ParseAddress(a.Canonical()); err != nil || c.Canonical() != a.Canonical() {
			t.Fatalf("canonical %q of %q: %v", a.Canonical(), s, err)
		}
	})
}
