package failcount

import (
	"net/netip"
	"testing"
	"time"
)

func TestCounter(t *testing.T) {
	now := time.Unix(1000, 0)
	f := New(time.Minute, func() time.Time { return now })
	ip := Key(netip.MustParseAddr("192.0.2.1"))
	f.Add(ip)
	now = now.Add(30 * time.Second)
	if n := f.Add(ip); n != 2 {
		t.Errorf("count %d", n)
	}
	now = now.Add(45 * time.Second)
	if n := f.Count(ip); n != 1 {
		t.Errorf("after the window: %d", n)
	}
	now = now.Add(time.Hour)
	if n := f.Count(ip); n != 0 || f.Clients() != 0 {
		t.Errorf("not forgotten: %d, %d clients", n, f.Clients())
	}
}

func TestKey(t *testing.T) {
	for _, c := range []struct{ ip, want string }{
		{"192.0.2.1", "192.0.2.1/32"},
		{"::ffff:192.0.2.1", "192.0.2.1/32"},
		{"2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"},
	} {
		if got := Key(netip.MustParseAddr(c.ip)).String(); got != c.want {
			t.Errorf("Key(%s) = %s, want %s", c.ip, got, c.want)
		}
	}
}
