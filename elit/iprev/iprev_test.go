package iprev

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"testing"

	"elit.local/elit/dns"
)

func TestCheck(t *testing.T) {
	ip := func(s string) netip.Addr { return netip.MustParseAddr(s) }
	rev := func(s string) string { return dns.ReverseName(ip(s)) }
	r := &dns.Mem{
		PTRs: map[string][]string{
			rev("192.0.2.1"):    {"mail.example.com."},
			rev("192.0.2.2"):    {"liar.example.com.", "Mail2.Example.com."},
			rev("192.0.2.3"):    {"liar.example.com."},
			rev("192.0.2.4"):    {"broken.example.com."},
			rev("192.0.2.5"):    {"broken.example.com.", "mail5.example.com."},
			rev("192.0.2.6"):    {"gone.example.com."},
			rev("2001:db8::25"): {"mail6.example.com."},
			rev("192.0.2.9"):    {},
		},
		Addrs: map[string][]netip.Addr{
			"mail.example.com":  {ip("192.0.2.1")},
			"mail2.example.com": {ip("2001:db8::2"), ip("192.0.2.2")},
			"liar.example.com":  {ip("198.51.100.1")},
			"mail5.example.com": {ip("192.0.2.5")},
			"mail6.example.com": {ip("2001:db8::25"), ip("192.0.2.25")},
		},
		Fail: map[string]error{
			"broken.example.com": errors.New("SERVFAIL"),
			rev("192.0.2.7"):     errors.New("timeout"),
		},
	}
	for _, tc := range []struct {
		ip        string
		want      Verdict
		names     []string
		confirmed []string
		temporary bool
	}{
		{"192.0.2.1", Pass, []string{"mail.example.com"}, []string{"mail.example.com"}, false},
		{"::ffff:192.0.2.1", Pass, []string{"mail.example.com"}, []string{"mail.example.com"}, false},
		{"192.0.2.2", Pass, []string{"liar.example.com", "mail2.example.com"}, []string{"mail2.example.com"}, false},
		{"192.0.2.3", Fail, []string{"liar.example.com"}, nil, false},
		{"192.0.2.4", TempError, []string{"broken.example.com"}, nil, true},
		{"192.0.2.5", Pass, []string{"broken.example.com", "mail5.example.com"}, []string{"mail5.example.com"}, false},
		{"192.0.2.6", Fail, []string{"gone.example.com"}, nil, false}, // the forward name does not exist
		{"192.0.2.7", TempError, nil, nil, true},
		{"192.0.2.8", PermError, nil, nil, false}, // NXDOMAIN
		{"192.0.2.9", PermError, nil, nil, false}, // no PTR
		{"2001:db8::25", Pass, []string{"mail6.example.com"}, []string{"mail6.example.com"}, false},
	} {
		res := Check(context.Background(), r, ip(tc.ip))
		if res.Result != tc.want || !slices.Equal(res.Names, tc.names) || !slices.Equal(res.Confirmed, tc.confirmed) ||
			errors.Is(res.Err, dns.ErrTemporary) != tc.temporary || (res.Result != Pass) != (res.Err != nil) {
			t.Errorf("%s: %+v", tc.ip, res)
		}
		if res.IP != ip(tc.ip).Unmap() {
			t.Errorf("%s: IP %s", tc.ip, res.IP)
		}
	}
	// At most 10 names are confirmed.
	many := &dns.Mem{PTRs: map[string][]string{rev("192.0.2.1"): {"a.example", "b.example", "c.example", "d.example", "e.example",
		"f.example", "g.example", "h.example", "i.example", "j.example", "mail.example.com"}},
		Addrs: map[string][]netip.Addr{"mail.example.com": {ip("192.0.2.1")}}}
	if res := Check(context.Background(), many, ip("192.0.2.1")); res.Result != Fail || len(res.Names) != 10 {
		t.Errorf("11 names: %+v", res)
	}
}
