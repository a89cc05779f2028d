package dkim

import (
	"fmt"
	"testing"
)

func TestParseTagList(t *testing.T) {
	cases := []struct {
		in   string
		want string // fmt of the list, or "error"
	}{
		{"a=b", "[{a b}]"},
		{"a=b;", "[{a b}]"},
		{"a=b; ", "[{a b}]"},
		{" a = b ; c=d", "[{a b} {c d}]"},
		{"a=b\r\n\t;\r\n c=d e\r\n f", "[{a b} {c d e\r\n f}]"},
		{"a=", "[{a }]"},
		{"a=;b=", "[{a } {b }]"},
		{"v=1; h=from : to", "[{v 1} {h from : to}]"},
		{"x_1=a=b", "[{x_1 a=b}]"},
		{"", "error"},
		{"  ", "error"},
		{";", "error"},
		{"a=b;;c=d", "error"},
		{"a=b; a=c", "error"},
		{"a", "error"},
		{"=b", "error"},
		{"1a=b", "error"},
		{"a-b=c", "error"},
		{"a=b\rc", "error"},
		{"a=b\r\nc=d", "error"},
		{"a=b\x00", "error"},
		{"a=é", "error"},
		{"a=b c;d", "error"},
	}
	for _, c := range cases {
		l, err := ParseTagList(c.in)
		got := fmt.Sprint(l)
		if err != nil {
			got = "error"
		}
		if got != c.want {
			t.Errorf("%q: %s (%v), want %s", c.in, got, err, c.want)
		}
	}
	l, _ := ParseTagList("a=1; B=2")
	if v, ok := l.Get("b"); ok {
		t.Errorf("tag names are case-sensitive: b=%s", v)
	}
}

func FuzzTagList(f *testing.F) {
	for _, s := range []string{"v=1; a=rsa-sha256; d=example.org; s=sel; h=from:to; bh=abc=; b=def",
		"v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=",
		"a=b\r\n\t;\r\n c=d e", "a=b;;", "a=b; a=c", " ; ", "a=\r\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		l, err := ParseTagList(s)
		if err != nil {
			return
		}
		seen := map[string]bool{}
		for _, tag := range l {
			if seen[tag.Name] || tag.Name == "" || !isAlpha(tag.Name[0]) {
				t.Fatalf("%q: %v", s, l)
			}
			seen[tag.Name] = true
			// Writing the list back gives the same list.
		}
		var out string
		for i, tag := range l {
			if i > 0 {
				out += "; "
			}
			out += tag.Name + "=" + tag.Value
		}
		l2, err := ParseTagList(out)
		if err != nil || fmt.Sprint(l2) != fmt.Sprint(l) {
			t.Fatalf("%q → %q → %v %v", s, out, l2, err)
		}
	})
}
