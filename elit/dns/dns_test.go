package dns

import (
	"context"
	"errors"
	"net"
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
