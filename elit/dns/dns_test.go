package dns

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// TestClient asks a miekg/dns server on loopback.
func TestClient(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &mdns.Server{PacketConn: pc, Handler: mdns.HandlerFunc(func(w mdns.ResponseWriter, r *mdns.Msg) {
		m := new(mdns.Msg)
		m.SetReply(r)
		q := r.Question[0]
		hdr := mdns.RR_Header{Name: q.Name, Rrtype: q.Qtype, Class: mdns.ClassINET, Ttl: 60}
		switch {
		case q.Name == "example.com." && q.Qtype == mdns.TypeMX:
			m.Answer = append(m.Answer, &mdns.MX{Hdr: hdr, Preference: 10, Mx: "MX.example.com."})
		case q.Name == "null.example." && q.Qtype == mdns.TypeMX:
			m.Answer = append(m.Answer, &mdns.MX{Hdr: hdr, Preference: 0, Mx: "."})
		case q.Name == "mx.example.com." && q.Qtype == mdns.TypeA:
			m.Answer = append(m.Answer, &mdns.A{Hdr: hdr, A: net.IPv4(192, 0, 2, 1)})
		case q.Name == "mx.example.com." && q.Qtype == mdns.TypeAAAA:
			m.Answer = append(m.Answer, &mdns.AAAA{Hdr: hdr, AAAA: net.ParseIP("2001:db8::1")})
		case q.Name == "example.com." && q.Qtype == mdns.TypeTXT:
			m.Answer = append(m.Answer,
				&mdns.TXT{Hdr: hdr, Txt: []string{"v=spf1 ", "ip4:192.0.2.0/24", " -all"}},
				&mdns.TXT{Hdr: hdr, Txt: []string{"google-site-verification=abc"}})
		case q.Name == "_dmarc.example.com." && q.Qtype == mdns.TypeTXT:
			m.Answer = append(m.Answer, &mdns.TXT{Hdr: hdr, Txt: []string{strings.Repeat("a", 255), strings.Repeat("b", 45)}})
		case q.Name == "4.3.2.1.in-addr.arpa." && q.Qtype == mdns.TypePTR:
			m.Answer = append(m.Answer,
				&mdns.PTR{Hdr: hdr, Ptr: "Mail.Example.com."},
				&mdns.PTR{Hdr: hdr, Ptr: "other.example.net."})
		case q.Name == "alias.example.com." && q.Qtype == mdns.TypeA:
			m.Answer = append(m.Answer,
				&mdns.CNAME{Hdr: mdns.RR_Header{Name: q.Name, Rrtype: mdns.TypeCNAME, Class: mdns.ClassINET, Ttl: 60}, Target: "mx.example.com."},
				&mdns.A{Hdr: mdns.RR_Header{Name: "mx.example.com.", Rrtype: mdns.TypeA, Class: mdns.ClassINET, Ttl: 60}, A: net.IPv4(192, 0, 2, 1)})
		case q.Name == "_submissions._tcp.example.com." && q.Qtype == mdns.TypeSRV:
			m.Answer = append(m.Answer, &mdns.SRV{Hdr: hdr, Priority: 0, Weight: 1, Port: 465, Target: "MX.example.com."})
		case q.Name == "broken.example.":
			m.Rcode = mdns.RcodeServerFailure
		case q.Name == "refused.example.":
			m.Rcode = mdns.RcodeRefused
		case q.Name == "slow.example.":
			return // no answer: the client times out
		case q.Name == "example.com." || q.Name == "null.example." || q.Name == "alias.example.com." || q.Name == "mx.example.com.":
		default:
			m.Rcode = mdns.RcodeNameError
		}
		w.WriteMsg(m)
	})}
	go srv.ActivateAndServe()
	defer srv.Shutdown()
	c := &Client{Server: pc.LocalAddr().String(), Timeout: 200 * time.Millisecond}
	ctx := context.Background()
	mx, err := c.LookupMX(ctx, "example.com")
	if err != nil || len(mx) != 1 || mx[0] != (MX{Host: "mx.example.com", Pref: 10}) {
		t.Errorf("MX: %v %v", mx, err)
	}
	if mx, err := c.LookupMX(ctx, "null.example"); err != nil || len(mx) != 1 || mx[0].Host != "" {
		t.Errorf("null MX: %v %v", mx, err)
	}
	if srv, err := c.LookupSRV(ctx, "_submissions._tcp.example.com"); err != nil || len(srv) != 1 || srv[0] != (SRV{0, 1, 465, "mx.example.com"}) {
		t.Errorf("SRV: %v %v", srv, err)
	}
	addrs, err := c.LookupAddrs(ctx, "mx.example.com")
	var got []string
	for _, a := range addrs {
		got = append(got, a.String())
	}
	if err != nil || !slices.Equal(got, []string{"2001:db8::1", "192.0.2.1"}) {
		t.Errorf("addrs: %v %v", got, err)
	}
	// The three outcomes: NXDOMAIN, a temporary failure, no records.
	for _, tc := range []struct {
		name      string
		nx, temp  bool
		withNames bool
	}{
		{"nowhere.example", true, false, false},
		{"a..b.example", true, false, false}, // cannot be asked: cannot exist
		{strings.Repeat("a", 64) + ".example", true, false, false},
		{"broken.example", false, true, false},  // SERVFAIL
		{"refused.example", false, true, false}, // REFUSED
		{"slow.example", false, true, false},    // timeout
		{"null.example", false, false, false},   // exists, no A
	} {
		addrs, err := c.LookupIP(ctx, "ip4", tc.name)
		if errors.Is(err, ErrNotFound) != tc.nx || errors.Is(err, ErrTemporary) != tc.temp || len(addrs) != 0 {
			t.Errorf("A %s: %v %v, want NXDOMAIN %v, temporary %v", tc.name, addrs, err, tc.nx, tc.temp)
		}
	}
	for _, tc := range []struct {
		network, host string
		want          []string
	}{
		{"ip4", "mx.example.com", []string{"192.0.2.1"}},
		{"ip6", "mx.example.com", []string{"2001:db8::1"}},
		{"ip4", "alias.example.com", []string{"192.0.2.1"}}, // through the CNAME
		{"ip6", "alias.example.com", nil},
	} {
		addrs, err := c.LookupIP(ctx, tc.network, tc.host)
		var got []string
		for _, a := range addrs {
			got = append(got, a.String())
		}
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("LookupIP %s %s: %v %v, want %v", tc.network, tc.host, got, err, tc.want)
		}
	}
	if _, err := c.LookupIP(ctx, "ip", "mx.example.com"); err == nil {
		t.Error("LookupIP with network ip: no error")
	}
	names, err := c.LookupPTR(ctx, netip.MustParseAddr("1.2.3.4"))
	if err != nil || !slices.Equal(names, []string{"mail.example.com", "other.example.net"}) {
		t.Errorf("PTR: %q %v", names, err)
	}
	// An IPv4-mapped address is asked under in-addr.arpa.
	if names, err := c.LookupPTR(ctx, netip.MustParseAddr("::ffff:1.2.3.4")); err != nil || len(names) != 2 {
		t.Errorf("PTR of a mapped address: %q %v", names, err)
	}
	if _, err := c.LookupPTR(ctx, netip.MustParseAddr("192.0.2.99")); !errors.Is(err, ErrNotFound) {
		t.Errorf("PTR NXDOMAIN: %v", err)
	}
	for _, tc := range []struct {
		name string
		want []string
		err  error
	}{
		// The strings of a record are one text (RFC 7208 §3.3).
		{"example.com", []string{"v=spf1 ip4:192.0.2.0/24 -all", "google-site-verification=abc"}, nil},
		{"_dmarc.example.com", []string{strings.Repeat("a", 255) + strings.Repeat("b", 45)}, nil},
		{"null.example", nil, nil}, // the name exists, without TXT
		{"nowhere.example", nil, ErrNotFound},
	} {
		got, err := c.LookupTXT(ctx, tc.name)
		if !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) || !slices.Equal(got, tc.want) {
			t.Errorf("TXT %s: %q %v, want %q %v", tc.name, got, err, tc.want, tc.err)
		}
	}
	if _, err := c.LookupTXT(ctx, "broken.example"); !errors.Is(err, ErrTemporary) || errors.Is(err, ErrNotFound) {
		t.Errorf("TXT SERVFAIL: %v", err)
	}
}

func TestReverseName(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.1":        "1.2.0.192.in-addr.arpa",
		"::ffff:192.0.2.1": "1.2.0.192.in-addr.arpa",
		"2001:db8::1":      "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa",
	} {
		if got := ReverseName(netip.MustParseAddr(in)); got != want {
			t.Errorf("ReverseName(%s) = %s, want %s", in, got, want)
		}
	}
}

// TestMem: the in-memory resolver answers as a server would: NXDOMAIN
// for a name it does not have, no records for one it has with other
// types.
func TestMem(t *testing.T) {
	m := &Mem{
		MXs:   map[string][]MX{"example.com": {{Host: "mx.example.com", Pref: 10}}},
		Addrs: map[string][]netip.Addr{"mx.example.com": {netip.MustParseAddr("192.0.2.1")}},
		TXTs:  map[string][]string{"example.com": {"v=spf1 -all"}, "_dmarc.example.com": {"v=DMARC1; p=reject"}},
		Fail:  map[string]error{"broken.example": errors.New("SERVFAIL")},
	}
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		want []string
		err  bool
		nx   bool
	}{
		{"EXAMPLE.com", []string{"v=spf1 -all"}, false, false},
		{"_dmarc.example.com", []string{"v=DMARC1; p=reject"}, false, false},
		{"mx.example.com", nil, false, false},
		{"nowhere.example", nil, true, true},
		{"broken.example", nil, true, false},
	} {
		got, err := m.LookupTXT(ctx, tc.name)
		if (err != nil) != tc.err || errors.Is(err, ErrNotFound) != tc.nx || !slices.Equal(got, tc.want) {
			t.Errorf("TXT %s: %q %v", tc.name, got, err)
		}
	}
	// A name with only TXT records exists: no MX, no error (implicit MX).
	if mx, err := m.LookupMX(ctx, "_dmarc.example.com"); err != nil || mx != nil {
		t.Errorf("MX of a name with TXT only: %v %v", mx, err)
	}
	// A failure keeps its text and is temporary.
	if _, err := m.LookupTXT(ctx, "broken.example"); !errors.Is(err, ErrTemporary) || err.Error() != "SERVFAIL" {
		t.Errorf("Fail: %v", err)
	}
}

// TestMemRecords: PTR records, addresses by family, aliases, failures of
// one type, NXDOMAIN given as a failure.
func TestMemRecords(t *testing.T) {
	ip := netip.MustParseAddr("192.0.2.1")
	m := &Mem{
		Addrs: map[string][]netip.Addr{
			"mail.example.com": {ip, netip.MustParseAddr("2001:db8::1")},
		},
		PTRs:   map[string][]string{ReverseName(ip): {"Mail.Example.com.", "other.example.net"}},
		CNAMEs: map[string]string{"alias.example.com": "MAIL.example.com.", "loop.example": "loop2.example", "loop2.example": "loop.example"},
		TXTs:   map[string][]string{"slow.example": {"v=spf1 -all"}},
		Fail: map[string]error{
			"slow.example A": errors.New("timeout"),
			"gone.example":   ErrNotFound,
			ReverseName(netip.MustParseAddr("192.0.2.2")) + " PTR": errors.New("SERVFAIL"),
		},
	}
	ctx := context.Background()
	str := func(addrs []netip.Addr) (out []string) {
		for _, a := range addrs {
			out = append(out, a.String())
		}
		return out
	}
	for _, tc := range []struct {
		network, host string
		want          []string
		nx, temp      bool
	}{
		{"ip4", "mail.example.com", []string{"192.0.2.1"}, false, false},
		{"ip6", "MAIL.example.com.", []string{"2001:db8::1"}, false, false},
		{"ip4", "alias.example.com", []string{"192.0.2.1"}, false, false},
		{"ip4", "loop.example", nil, false, true},
		{"ip4", "slow.example", nil, false, true},
		{"ip6", "slow.example", nil, false, false}, // only A fails
		{"ip4", "gone.example", nil, true, false},
		{"ip4", "nowhere.example", nil, true, false},
	} {
		got, err := m.LookupIP(ctx, tc.network, tc.host)
		if !slices.Equal(str(got), tc.want) || errors.Is(err, ErrNotFound) != tc.nx || errors.Is(err, ErrTemporary) != tc.temp {
			t.Errorf("LookupIP %s %s: %v %v", tc.network, tc.host, got, err)
		}
	}
	if txt, err := m.LookupTXT(ctx, "slow.example"); err != nil || len(txt) != 1 {
		t.Errorf("TXT of a name whose A fails: %q %v", txt, err)
	}
	if names, err := m.LookupPTR(ctx, ip); err != nil || !slices.Equal(names, []string{"mail.example.com", "other.example.net"}) {
		t.Errorf("PTR: %q %v", names, err)
	}
	if _, err := m.LookupPTR(ctx, netip.MustParseAddr("192.0.2.2")); !errors.Is(err, ErrTemporary) {
		t.Errorf("PTR failing: %v", err)
	}
	if _, err := m.LookupPTR(ctx, netip.MustParseAddr("192.0.2.3")); !errors.Is(err, ErrNotFound) {
		t.Errorf("PTR NXDOMAIN: %v", err)
	}
	if addrs, err := m.LookupAddrs(ctx, "mail.example.com"); err != nil || len(addrs) != 2 {
		t.Errorf("LookupAddrs: %v %v", addrs, err)
	}
}

func TestResolvConf(t *testing.T) {
	dir := t.TempDir()
	path := dir + "/resolv.conf"
	c := &Client{ResolvConf: path, Timeout: 100 * time.Millisecond}
	// Before DHCP has written it: a temporary error, not a crash.
	if _, err := c.LookupMX(context.Background(), "example.com"); !errors.Is(err, ErrTemporary) || !strings.Contains(err.Error(), "no nameserver") {
		t.Fatalf("no resolv.conf: %v", err)
	}
	for in, want := range map[string]string{
		"# by dhcp\nsearch lan\nnameserver 10.0.2.3\nnameserver 1.1.1.1\n": "10.0.2.3:53",
		"nameserver ::1\n": "[::1]:53",
		"search lan\n":     "",
	} {
		os.WriteFile(path, []byte(in), 0o644)
		if got := ResolvConfServer(path); got != want {
			t.Errorf("ResolvConfServer(%q) = %q, want %q", in, got, want)
		}
	}
}
