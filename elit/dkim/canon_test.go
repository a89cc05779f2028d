package dkim

import (
	"bytes"
	"crypto/sha256"
	"testing"
)

func TestCanonHeader(t *testing.T) {
	cases := []struct {
		raw, simple, relaxed string
	}{
		{"Subject: Hi\r\n", "Subject: Hi\r\n", "subject:Hi\r\n"},
		{"SUBJECT  :  Is  dinner\t ready? \t\r\n", "SUBJECT  :  Is  dinner\t ready? \t\r\n", "subject:Is dinner ready?\r\n"},
		{"To: a,\r\n\tb,\r\n  c\r\n", "To: a,\r\n\tb,\r\n  c\r\n", "to:a, b, c\r\n"},
		{"X-Empty:\r\n", "X-Empty:\r\n", "x-empty:\r\n"},
		{"X-Empty: \r\n \r\n", "X-Empty: \r\n \r\n", "x-empty:\r\n"},
		{"X-Cut: short", "X-Cut: short\r\n", "x-cut:short\r\n"},
	}
	for _, c := range cases {
		if got := string(CanonHeader(nil, Simple, []byte(c.raw))); got != c.simple {
			t.Errorf("simple %q: %q, want %q", c.raw, got, c.simple)
		}
		if got := string(CanonHeader(nil, Relaxed, []byte(c.raw))); got != c.relaxed {
			t.Errorf("relaxed %q: %q, want %q", c.raw, got, c.relaxed)
		}
	}
}

// canonBody canonicalizes body written in pieces of n octets (0: whole).
func canonBody(c Canon, body string, n int) string {
	var out bytes.Buffer
	w := NewBodyCanonicalizer(c, &out)
	b := []byte(body)
	for n > 0 && len(b) > n {
		w.Write(b[:n])
		b = b[n:]
	}
	w.Write(b)
	w.Close()
	return out.String()
}

func TestCanonBody(t *testing.T) {
	cases := []struct {
		body, simple, relaxed string
	}{
		{"", "\r\n", ""},
		{"\r\n", "\r\n", ""},
		{"\r\n\r\n\r\n", "\r\n", ""},
		{" \r\n\t\r\n", " \r\n\t\r\n", ""},
		{"abc", "abc\r\n", "abc\r\n"},
		{"abc\r\n", "abc\r\n", "abc\r\n"},
		{"abc\r\n\r\n\r\n", "abc\r\n", "abc\r\n"},
		{"abc \r\n \r\n", "abc \r\n \r\n", "abc\r\n"},
		{"a  b\t\tc \r\n  d\r\n", "a  b\t\tc \r\n  d\r\n", "a b c\r\n d\r\n"},
		{"a\r\n\r\nb\r\n\r\n", "a\r\n\r\nb\r\n", "a\r\n\r\nb\r\n"},
		{"a\r\n  \r\nb", "a\r\n  \r\nb\r\n", "a\r\n\r\nb\r\n"},
		{"a\rb\nc\r", "a\rb\nc\r\r\n", "a\rb\nc\r\r\n"},
		{"a \r", "a \r\r\n", "a \r\r\n"},
		{"Hi.\r\n\r\nWe lost the game.  Are you hungry yet?\r\n\r\nJoe.\r\n\r\n\r\n",
			"Hi.\r\n\r\nWe lost the game.  Are you hungry yet?\r\n\r\nJoe.\r\n",
			"Hi.\r\n\r\nWe lost the game. Are you hungry yet?\r\n\r\nJoe.\r\n"},
	}
	for _, c := range cases {
		for _, n := range []int{0, 1, 2, 3} {
			if got := canonBody(Simple, c.body, n); got != c.simple {
				t.Errorf("simple %q /%d: %q, want %q", c.body, n, got, c.simple)
			}
			if got := canonBody(Relaxed, c.body, n); got != c.relaxed {
				t.Errorf("relaxed %q /%d: %q, want %q", c.body, n, got, c.relaxed)
			}
		}
	}
}

func TestBodyHasherLimit(t *testing.T) {
	h := NewBodyHasher(Relaxed, sha256.New(), 5)
	h.Write([]byte("abc  def\r\n\r\n"))
	sum := h.Sum()
	want := sha256.Sum256([]byte("abc d"))
	if !bytes.Equal(sum, want[:]) || h.Len() != 9 {
		t.Errorf("%x (%d), want %x", sum, h.Len(), want)
	}
}

// FuzzBodyCanon: the canonicalizers stream: the result does not depend
// on how the body is cut, and canonicalizing twice changes nothing.
func FuzzBodyCanon(f *testing.F) {
	for _, s := range []string{"", "a \r\n\r\n", "a\r\rb\n\r\n \t\r\n", "x\r"} {
		f.Add(s, 1)
	}
	f.Fuzz(func(t *testing.T, body string, n int) {
		n = n%7 + 1
		if n < 1 {
			n = -n + 1
		}
		for _, c := range []Canon{Simple, Relaxed} {
			whole := canonBody(c, body, 0)
			if cut := canonBody(c, body, n); cut != whole {
				t.Fatalf("%s %q: %q in one, %q in pieces of %d", c, body, whole, cut, n)
			}
			if again := canonBody(c, whole, 0); again != whole {
				t.Fatalf("%s %q: %q, then %q", c, body, whole, again)
			}
		}
	})
}
