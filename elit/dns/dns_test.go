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
		case q.Name == "broken.example.":
			m.Rcode = mdns.RcodeServerFailure
		case q.Name == "example.com." || q.Name == "null.example.":
		default:
			m.Rcode = mdns.RcodeNameError
		}
		w.WriteMsg(m)
	})}
	go srv.ActivateAndServe()
	defer srv.Shutdown()
	c := &Client{Server: pc.LocalAddr().String()}
	ctx := context.Background()
	mx, err := c.LookupMX(ctx, "example.com")
	if err != nil || len(mx) != 1 || mx[0] != (MX{Host: "mx.example.com", Pref: 10}) {
		t.Errorf("MX: %v %v", mx, err)
	}
	if mx, err := c.LookupMX(ctx, "null.example"); err != nil || len(mx) != 1 || mx[0].Host != "" {
		t.Errorf("null MX: %v %v", mx, err)
	}
	addrs, err := c.LookupAddrs(ctx, "mx.example.com")
	var got []string
	for _, a := range addrs {
		got = append(got, a.String())
	}
	if err != nil || !slices.Equal(got, []string{"2001:db8::1", "192.0.2.1"}) {
		t.Errorf("addrs: %v %v", got, err)
	}
	if _, err := c.LookupMX(ctx, "nowhere.example"); !errors.Is(err, ErrNotFound) {
		t.Errorf("NXDOMAIN: %v", err)
	}
	if _, err := c.LookupMX(ctx, "broken.example"); err == nil || errors.Is(err, ErrNotFound) {
		t.Errorf("SERVFAIL: %v", err)
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
	if _, err := c.LookupTXT(ctx, "broken.example"); err == nil || errors.Is(err, ErrNotFound) {
		t.Errorf("TXT SERVFAIL: %v", err)
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
}

func TestResolvConf(t *testing.T) {
	dir := t.TempDir()
	path := dir + "/resolv.conf"
	c := &Client{ResolvConf: path, Timeout: 100 * time.Millisecond}
	// Before DHCP has written it: a temporary error, not a crash.
	if _, err := c.LookupMX(context.Background(), "example.com"); err == nil || !strings.Contains(err.Error(), "no nameserver") {
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
