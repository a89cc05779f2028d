package reply

import (
	"fmt"
	"testing"
)

func TestReply(t *testing.T) {
	for _, c := range []struct {
		r         *Reply
		text      string
		permanent bool
	}{
		{New(550, Enhanced{5, 1, 1}, "<%s>: no such user", "a@b.example"), "550 5.1.1 <a@b.example>: no such user", true},
		{New(451, Enhanced{4, 3, 0}, "later"), "451 4.3.0 later", false},
		{New(421, Enhanced{}, "bye"), "421 bye", false},
	} {
		if c.r.Error() != c.text || c.r.Permanent() != c.permanent || c.r.Temporary() == c.permanent {
			t.Errorf("%+v: %q permanent %v", c.r, c.r.Error(), c.r.Permanent())
		}
		wrapped := fmt.Errorf("at RCPT: %w", c.r)
		if r, ok := As(wrapped); !ok || r != c.r {
			t.Errorf("As(%v) = %v %v", wrapped, r, ok)
		}
	}
}

func TestParseEnhanced(t *testing.T) {
	for _, c := range []struct {
		in   string
		want Enhanced
		ok   bool
	}{
		{"5.1.1", Enhanced{5, 1, 1}, true},
		{"4.7.26", Enhanced{4, 7, 26}, true},
		{"2.0.0", Enhanced{2, 0, 0}, true},
		{"5.100.999", Enhanced{5, 100, 999}, true},
		{"3.1.1", Enhanced{}, false},
		{"5.1", Enhanced{}, false},
		{"5.1.1.1", Enhanced{}, false},
		{"5..1", Enhanced{}, false},
		{"5.1.1000", Enhanced{}, false},
		{"5.+1.1", Enhanced{}, false},
		{"", Enhanced{}, false},
	} {
		got, ok := ParseEnhanced(c.in)
		if got != c.want || ok != c.ok {
			t.Errorf("ParseEnhanced(%q) = %v %v", c.in, got, ok)
		}
		if ok && got.String() != c.in {
			t.Errorf("String() = %q", got.String())
		}
	}
}

func FuzzParseEnhanced(f *testing.F) {
	f.Add("5.1.1")
	f.Add("4.7.26")
	f.Add("5..")
	f.Fuzz(func(t *testing.T, s string) {
		if e, ok := ParseEnhanced(s); ok {
			if again, ok2 := ParseEnhanced(e.String()); !ok2 || again != e {
				t.Errorf("%q → %v → %q", s, e, e.String())
			}
		}
	})
}
