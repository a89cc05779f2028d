package dane

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"testing"

	"elit.local/elit/dns"
)

// TestLookup follows RFC 7672 §2.2 through an in-memory DNS: the MX
// RRset and the addresses must be secure, TLSA records are looked for at
// the CNAME-expanded name then at the MX host name, and failures are
// errors, not a way around DANE.
func TestLookup(t *testing.T) {
	ip := netip.MustParseAddr("192.0.2.1")
	sha := make([]byte, 32)
	ee := dns.TLSA{Usage: 3, Selector: 1, MatchingType: 1, Data: sha}
	pkix := dns.TLSA{Usage: 1, Selector: 1, MatchingType: 1, Data: sha}
	r := &dns.Mem{
		MXs: map[string][]dns.MX{
			"example.com":   {{Host: "mx.example.com", Pref: 10}},
			"example.net":   {{Host: "mx.example.net", Pref: 10}}, // unsigned
			"alias.example": {{Host: "mx.alias.example", Pref: 10}},
			"broken.com":    {{Host: "mx.example.com", Pref: 10}},
		},
		Addrs: map[string][]netip.Addr{
			"mx.example.com": {ip}, "mx.example.net": {ip}, "mx2.example.com": {ip}, "mx3.example.com": {ip},
			"mx4.example.com": {ip}, "mx5.example.com": {ip}, "srv.hosting.example": {ip}, "nomx.example.com": {ip},
			"mx.unsigned.example": {ip},
		},
		CNAMEs: map[string]string{
			"mx.alias.example":     "srv.hosting.example",
			"mx2.alias.example":    "srv2.hosting.example",
			"out.example.com":      "mx.unsigned.example",
			"srv2.hosting.example": "mx2.example.com",
		},
		TLSAs: map[string][]dns.TLSA{
			"_25._tcp.mx.example.com":      {ee, pkix},
			"_25._tcp.mx.example.net":      {ee},
			"_25._tcp.mx3.example.com":     {pkix},
			"_25._tcp.srv.hosting.example": {ee},
			"_25._tcp.mx2.alias.example":   {ee},
			"_25._tcp.nomx.example.com":    {ee},
		},
		Secure: []string{"example.com", "alias.example", "hosting.example", "broken.com"},
		Fail: map[string]error{
			"_25._tcp.mx4.example.com TLSA": dns.ErrBogus,
			"mx5.example.com A":             errors.New("SERVFAIL"),
			"broken.com MX":                 dns.ErrBogus,
		},
	}
	for _, tc := range []struct {
		name, domain, host string
		mode               Mode
		base               string
		names              []string
		err                error
	}{
		{"signed", "example.com", "mx.example.com", ModeVerify, "mx.example.com", []string{"mx.example.com"}, nil},
		{"unsigned MX", "example.net", "mx.example.net", ModeNone, "", nil, nil},
		{"unsigned MX, signed host", "example.net", "mx.example.com", ModeNone, "", nil, nil},
		{"no TLSA", "example.com", "mx2.example.com", ModeNone, "", nil, nil},
		{"only unusable TLSA", "example.com", "mx3.example.com", ModeEncrypt, "mx3.example.com", nil, nil},
		{"bogus TLSA", "example.com", "mx4.example.com", ModeNone, "", nil, dns.ErrBogus},
		{"address lookup fails", "example.com", "mx5.example.com", ModeNone, "", nil, dns.ErrTemporary},
		{"bogus MX", "broken.com", "mx.example.com", ModeNone, "", nil, dns.ErrBogus},
		{"secure CNAME, TLSA at the target", "alias.example", "mx.alias.example", ModeVerify, "srv.hosting.example",
			[]string{"srv.hosting.example", "mx.alias.example"}, nil},
		{"secure CNAME, TLSA at the MX name", "alias.example", "mx2.alias.example", ModeVerify, "mx2.alias.example",
			[]string{"mx2.alias.example", "mx2.example.com"}, nil},
		{"CNAME to an unsigned zone", "example.com", "out.example.com", ModeNone, "", nil, nil},
		{"no MX: the domain itself", "nomx.example.com", "nomx.example.com", ModeVerify, "nomx.example.com", []string{"nomx.example.com"}, nil},
		{"relay: no MX lookup", "", "mx.example.com", ModeVerify, "mx.example.com", []string{"mx.example.com"}, nil},
		{"address literal", "example.com", "192.0.2.1", ModeNone, "", nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Lookup(context.Background(), r, tc.domain, tc.host)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("Lookup: %+v %v, want %v", p, err, tc.err)
				}
				return
			}
			if err != nil || p.Mode != tc.mode || p.Base != tc.base || p.Reason == "" {
				t.Fatalf("Lookup: %+v %v, want mode %v base %q", p, err, tc.mode, tc.base)
			}
			if tc.names != nil && !slices.Equal(p.Names, tc.names) {
				t.Errorf("names %q, want %q", p.Names, tc.names)
			}
			if p.Mode == ModeVerify && (len(p.Records) == 0 || UsableRecords(p.Records) == nil) {
				t.Errorf("records %v", p.Records)
			}
		})
	}
}
