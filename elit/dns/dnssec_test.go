package dns

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"elit.local/elit/internal/dnsseclab"
)

const tlsaHex = "8bd1da95272f7fa4ffb24137fc0ed03aae67e5c4d8b3c50734e1050a7920b922"

// labZones: dane.test signed (with a bogus name), plain.test unsigned.
func labZones() []dnsseclab.Zone {
	return []dnsseclab.Zone{{
		Name:   "dane.test",
		Signed: true,
		Records: []string{
			"dane.test. 300 IN MX 10 mx.dane.test.",
			"mx.dane.test. 300 IN A 127.0.0.1",
			"mx.dane.test. 300 IN AAAA ::1",
			"_25._tcp.mx.dane.test. 300 IN TLSA 3 1 1 " + tlsaHex,
			"alias.dane.test. 300 IN CNAME mx.dane.test.",
			"out.dane.test. 300 IN CNAME mx.plain.test.",
			"nomx.dane.test. 300 IN A 127.0.0.1",
			"bogus.dane.test. 300 IN A 127.0.0.1",
			"bogus.dane.test. 300 IN MX 10 mx.dane.test.",
			"_25._tcp.badsig.dane.test. 300 IN TLSA 3 1 1 " + tlsaHex,
		},
		Bogus: []string{"bogus.dane.test", "_25._tcp.badsig.dane.test"},
	}, {
		Name: "plain.test",
		Records: []string{
			"plain.test. 300 IN MX 10 mx.plain.test.",
			"mx.plain.test. 300 IN A 127.0.0.1",
			"_25._tcp.mx.plain.test. 300 IN TLSA 3 1 1 " + tlsaHex,
		},
	}}
}

// TestClientDNSSEC asks unbound, validating the lab's zones: signed
// answers are secure (the records and their denials), unsigned ones are
// not, bogus ones fail with ErrBogus; the same answers straight from the
// authoritative server, which never sets AD, are never secure.
func TestClientDNSSEC(t *testing.T) {
	lab := dnsseclab.Start(t, dnsseclab.Config{Zones: labZones()})
	ctx := context.Background()
	for _, server := range []struct {
		name     string
		addr     string
		validate bool
	}{{"unbound", lab.Resolver, true}, {"authoritative", lab.Auth, false}} {
		t.Run(server.name, func(t *testing.T) {
			c := &Client{Server: server.addr}
			for _, tc := range []struct {
				domain string
				want   []MX
				secure bool
				bogus  bool
			}{
				{"dane.test", []MX{{"mx.dane.test", 10}}, true, false},
				{"nomx.dane.test", nil, true, false}, // NODATA, proved by NSEC
				{"plain.test", []MX{{"mx.plain.test", 10}}, false, false},
				{"bogus.dane.test", nil, false, true},
			} {
				mxs, secure, err := c.LookupMXSecure(ctx, tc.domain)
				if tc.bogus && server.validate {
					if !errors.Is(err, ErrBogus) || !errors.Is(err, ErrTemporary) {
						t.Errorf("MX %s: %v %v %v, want a bogus answer", tc.domain, mxs, secure, err)
					}
					continue
				}
				if tc.bogus {
					continue
				}
				if err != nil || !slices.Equal(mxs, tc.want) || secure != (tc.secure && server.validate) {
					t.Errorf("MX %s: %v secure %v %v; want %v secure %v", tc.domain, mxs, secure, err, tc.want, tc.secure && server.validate)
				}
			}
			for _, tc := range []struct {
				name   string
				n      int
				secure bool
				bogus  bool
			}{
				{"_25._tcp.mx.dane.test", 1, true, false},
				{"_25._tcp.nowhere.dane.test", 0, true, false}, // NXDOMAIN, proved by NSEC
				{"_tcp.mx.dane.test", 0, true, false},          // an empty non-terminal
				{"_25._tcp.mx.plain.test", 1, false, false},
				{"_25._tcp.badsig.dane.test", 0, false, true},
			} {
				recs, secure, err := c.LookupTLSA(ctx, tc.name)
				if tc.bogus {
					if server.validate && !errors.Is(err, ErrBogus) {
						t.Errorf("TLSA %s: %v %v %v, want a bogus answer", tc.name, recs, secure, err)
					}
					continue
				}
				if err != nil || len(recs) != tc.n || secure != (tc.secure && server.validate) {
					t.Errorf("TLSA %s: %v secure %v %v", tc.name, recs, secure, err)
				}
				if tc.n == 1 && (recs[0].String() != "3 1 1 "+tlsaHex) {
					t.Errorf("TLSA %s: %v", tc.name, recs[0])
				}
			}
			for _, tc := range []struct {
				host, name string
				addrs      []string
				secure     bool
				bogus      bool
			}{
				{"mx.dane.test", "mx.dane.test", []string{"::1", "127.0.0.1"}, true, false},
				{"alias.dane.test", "mx.dane.test", []string{"::1", "127.0.0.1"}, true, false},
				{"out.dane.test", "mx.plain.test", []string{"127.0.0.1"}, false, false}, // a secure CNAME to an insecure name
				{"mx.plain.test", "mx.plain.test", []string{"127.0.0.1"}, false, false},
				{"bogus.dane.test", "", nil, false, true},
			} {
				h, err := c.LookupAddrsSecure(ctx, tc.host)
				if tc.bogus && server.validate {
					if !errors.Is(err, ErrBogus) {
						t.Errorf("addresses of %s: %+v %v, want a bogus answer", tc.host, h, err)
					}
					continue
				}
				if tc.bogus || (!server.validate && tc.host != tc.name) {
					continue // the authoritative server does not follow CNAMEs
				}
				var got []string
				for _, a := range h.Addrs {
					got = append(got, a.String())
				}
				if err != nil || !slices.Equal(got, tc.addrs) || h.Secure != (tc.secure && server.validate) {
					t.Errorf("addresses of %s: %+v %v; want %v secure %v", tc.host, h, err, tc.addrs, tc.secure && server.validate)
				}
				if h.Name != tc.name {
					t.Errorf("addresses of %s: name %q, want %q", tc.host, h.Name, tc.name)
				}
			}
		})
	}
	// The old lookups go on as before through the validating resolver.
	c := &Client{Server: lab.Resolver}
	if mxs, err := c.LookupMX(ctx, "dane.test"); err != nil || len(mxs) != 1 {
		t.Errorf("LookupMX: %v %v", mxs, err)
	}
	if _, err := c.LookupMX(ctx, "nowhere.dane.test"); !errors.Is(err, ErrNotFound) {
		t.Errorf("LookupMX of a name that does not exist: %v", err)
	}
	if _, err := c.LookupIP(ctx, "ip4", "bogus.dane.test"); !errors.Is(err, ErrTemporary) || !strings.Contains(err.Error(), "SERVFAIL") {
		t.Errorf("A of a bogus name: %v", err)
	}
}

// TestTrustAD: the AD bit is believed from a loopback resolver, or one
// the configuration trusts, never from another (RFC 4035 §4.9.3).
func TestTrustAD(t *testing.T) {
	for _, tc := range []struct {
		server  string
		trustAD bool
		want    bool
	}{
		{"127.0.0.1:53", false, true},
		{"127.0.0.53:53", false, true},
		{"[::1]:53", false, true},
		{"[::ffff:127.0.0.1]:53", false, true},
		{"192.0.2.1:53", false, false},
		{"[2001:db8::1]:53", false, false},
		{"192.0.2.1:53", true, true},
		{"resolver.example:53", false, false},
	} {
		c := &Client{Server: tc.server, TrustAD: tc.trustAD}
		if got := c.trusted(tc.server); got != tc.want {
			t.Errorf("trusted(%s, TrustAD %v) = %v, want %v", tc.server, tc.trustAD, got, tc.want)
		}
	}
}

// TestMemDNSSEC: Mem's answers are secure in its signed zones, along
// every CNAME; a failure may be bogus.
func TestMemDNSSEC(t *testing.T) {
	ip := netip.MustParseAddr("192.0.2.1")
	m := &Mem{
		MXs:    map[string][]MX{"example.com": {{Host: "mx.example.com", Pref: 10}}, "example.net": {{Host: "mx.example.net", Pref: 10}}},
		Addrs:  map[string][]netip.Addr{"mx.example.com": {ip}, "mx.example.net": {ip}},
		TLSAs:  map[string][]TLSA{"_25._tcp.mx.example.com": {{3, 1, 1, []byte{1, 2}}}},
		CNAMEs: map[string]string{"alias.example.com": "mx.example.com", "out.example.com": "mx.example.net"},
		Secure: []string{"example.com"},
		Fail:   map[string]error{"_25._tcp.bad.example.com TLSA": ErrBogus},
	}
	ctx := context.Background()
	if mxs, secure, err := m.LookupMXSecure(ctx, "example.com"); err != nil || !secure || len(mxs) != 1 {
		t.Errorf("MX example.com: %v %v %v", mxs, secure, err)
	}
	if _, secure, err := m.LookupMXSecure(ctx, "example.net"); err != nil || secure {
		t.Errorf("MX example.net: %v %v", secure, err)
	}
	for _, tc := range []struct {
		host, name string
		secure     bool
	}{
		{"mx.example.com", "mx.example.com", true},
		{"alias.example.com", "mx.example.com", true},
		{"out.example.com", "mx.example.net", false},
		{"192.0.2.1", "192.0.2.1", false},
	} {
		h, err := m.LookupAddrsSecure(ctx, tc.host)
		if err != nil || h.Name != tc.name || h.Secure != tc.secure || len(h.Addrs) != 1 {
			t.Errorf("addresses of %s: %+v %v", tc.host, h, err)
		}
	}
	if _, err := m.LookupAddrsSecure(ctx, "nowhere.example.com"); !errors.Is(err, ErrNotFound) {
		t.Errorf("addresses of a name that does not exist: %v", err)
	}
	for _, tc := range []struct {
		name      string
		n         int
		secure    bool
		temporary bool
	}{
		{"_25._tcp.mx.example.com", 1, true, false},
		{"_25._tcp.nowhere.example.com", 0, true, false},
		{"_25._tcp.mx.example.net", 0, false, false},
		{"_25._tcp.bad.example.com", 0, false, true},
	} {
		recs, secure, err := m.LookupTLSA(ctx, tc.name)
		if len(recs) != tc.n || secure != tc.secure || errors.Is(err, ErrTemporary) != tc.temporary || (err != nil) != tc.temporary {
			t.Errorf("TLSA %s: %v %v %v", tc.name, recs, secure, err)
		}
		if tc.temporary && !errors.Is(err, ErrBogus) {
			t.Errorf("TLSA %s: %v, want ErrBogus", tc.name, err)
		}
	}
}
