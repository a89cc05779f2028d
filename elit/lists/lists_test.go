package lists

import (
	"path/filepath"
	"testing"
	"time"
)

func TestBounceAddress(t *testing.T) {
	for _, c := range []struct{ list, member string }{
		{"team@example.org", "romain@example.com"},
		{"team@example.org", "a=b+c@example.net"},
	} {
		a := BounceAddress(c.list, c.member)
		l, m, ok := ParseBounceAddress(a)
		if !ok || l != c.list || m != c.member {
			t.Errorf("%s: %q %q %v", a, l, m, ok)
		}
	}
	for _, bad := range []string{"team@example.org", "+bounces=a=b@x", "team+bounces=@x", "team+bounces=ab@x", "team+bounces=a=@x"} {
		if _, _, ok := ParseBounceAddress(bad); ok {
			t.Errorf("%q parsed", bad)
		}
	}
}

func TestRecord(t *testing.T) {
	b := Open(filepath.Join(t.TempDir(), "bounces.json"))
	now := time.Unix(1e9, 0)
	b.Record("team@example.org", "R@example.com", "550 no", now)
	b.Record("team@example.org", "r@example.com", "551 moved", now.Add(time.Hour))
	all, err := b.Read()
	if err != nil {
		t.Fatal(err)
	}
	m := all["team@example.org"]["r@example.com"]
	if m == nil || m.Bounces != 2 || m.LastReason != "551 moved" {
		t.Fatalf("%+v", all)
	}
	if lines := Format(all); len(lines) != 1 {
		t.Errorf("%q", lines)
	}
}
