package dane

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"testing"
	"time"

	"elit.local/elit/dns"
	"elit.local/elit/internal/dnsseclab"
)

// tlsServer serves chain (with key) on loopback until the test ends: a
// handshake and nothing more.
func tlsServer(t *testing.T, key *ecdsa.PrivateKey, chain ...*x509.Certificate) string {
	t.Helper()
	cert := tls.Certificate{PrivateKey: key}
	for _, c := range chain {
		cert.Certificate = append(cert.Certificate, c.Raw)
	}
	l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				c.(*tls.Conn).Handshake()
				c.Read(make([]byte, 1))
			}()
		}
	}()
	return l.Addr().String()
}

// TestLab: the policy comes from unbound validating a signed zone, and
// a TLS handshake with a server on loopback is accepted when the
// server's chain matches the TLSA records, refused otherwise.
func TestLab(t *testing.T) {
	now := time.Now()
	ca := func(name string) *x509.Certificate {
		tmpl := caTemplate(name)
		tmpl.NotBefore, tmpl.NotAfter = now.Add(-time.Hour), now.Add(24*time.Hour)
		return tmpl
	}
	root, rootKey := newCert(t, ca("Lab Root"), nil, nil)
	inter, interKey := newCert(t, ca("Lab Intermediate"), root, rootKey)
	leaf := func(name string) (*x509.Certificate, *ecdsa.PrivateKey) {
		tmpl := leafTemplate(name)
		tmpl.NotBefore, tmpl.NotAfter = now.Add(-time.Hour), now.Add(time.Hour)
		return newCert(t, tmpl, inter, interKey)
	}
	goodLeaf, goodKey := leaf("mx.dane.test")
	otherLeaf, otherKey := leaf("mx.dane.test")
	taLeaf, taKey := leaf("ta.dane.test")
	wrongName, wrongKey := leaf("elsewhere.dane.test")
	rec := func(c *x509.Certificate, usage, selector, mt uint8) string {
		return Record(c, usage, selector, mt).String()
	}
	lab := dnsseclab.Start(t, dnsseclab.Config{Zones: []dnsseclab.Zone{{
		Name:   "dane.test",
		Signed: true,
		Records: []string{
			"dane.test. 300 IN MX 10 mx.dane.test.",
			"dane.test. 300 IN MX 20 ta.dane.test.",
			"mx.dane.test. 300 IN A 127.0.0.1",
			"ta.dane.test. 300 IN A 127.0.0.1",
			"alias.dane.test. 300 IN CNAME mx.dane.test.",
			"_25._tcp.mx.dane.test. 300 IN TLSA " + rec(goodLeaf, UsageDANEEE, SelectorSPKI, MatchSHA256),
			"_25._tcp.mx.dane.test. 300 IN TLSA " + rec(root, UsageDANEEE, SelectorCert, MatchSHA512), // a second, matching nothing
			"_25._tcp.ta.dane.test. 300 IN TLSA " + rec(inter, UsageDANETA, SelectorSPKI, MatchSHA256),
			"bad.dane.test. 300 IN MX 10 bad-mx.dane.test.",
			"bad-mx.dane.test. 300 IN A 127.0.0.1",
			"_25._tcp.bad-mx.dane.test. 300 IN TLSA " + rec(root, UsageDANEEE, SelectorSPKI, MatchSHA256),
			"bogus.dane.test. 300 IN MX 10 bogus-mx.dane.test.",
			"bogus-mx.dane.test. 300 IN A 127.0.0.1",
			"_25._tcp.bogus-mx.dane.test. 300 IN TLSA " + rec(goodLeaf, UsageDANEEE, SelectorSPKI, MatchSHA256),
		},
		Bogus: []string{"_25._tcp.bogus-mx.dane.test"},
	}, {
		Name: "plain.test",
		Records: []string{
			"plain.test. 300 IN MX 10 mx.plain.test.",
			"mx.plain.test. 300 IN A 127.0.0.1",
			"_25._tcp.mx.plain.test. 300 IN TLSA " + rec(goodLeaf, UsageDANEEE, SelectorSPKI, MatchSHA256),
		},
	}}})
	resolver := &dns.Client{Server: lab.Resolver, Timeout: 2 * time.Second}
	servers := map[string]string{
		"good":       tlsServer(t, goodKey, goodLeaf, inter),
		"other":      tlsServer(t, otherKey, otherLeaf, inter),
		"ta":         tlsServer(t, taKey, taLeaf, inter),
		"wrong name": tlsServer(t, wrongKey, wrongName, inter),
	}
	handshake := func(p Policy, addr string) error {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		tc := tls.Client(c, &tls.Config{ServerName: p.Base, InsecureSkipVerify: true, VerifyConnection: p.VerifyConnection(nil)})
		return tc.HandshakeContext(context.Background())
	}
	for _, tc := range []struct {
		name, domain, host, server string
		mode                       Mode
		err                        error // of the handshake; nil: accepted
		lookupErr                  error
	}{
		{"DANE-EE match", "dane.test", "mx.dane.test", "good", ModeVerify, nil, nil},
		{"DANE-EE through a CNAME", "", "alias.dane.test", "good", ModeVerify, nil, nil},
		{"DANE-EE mismatch", "dane.test", "mx.dane.test", "other", ModeVerify, ErrNoMatch, nil},
		{"DANE-TA match", "dane.test", "ta.dane.test", "ta", ModeVerify, nil, nil},
		{"DANE-TA, another name", "dane.test", "ta.dane.test", "wrong name", ModeVerify, x509.HostnameError{}, nil},
		{"DANE-EE, a record of the CA", "bad.dane.test", "bad-mx.dane.test", "good", ModeVerify, ErrNoMatch, nil},
		{"unsigned zone", "plain.test", "mx.plain.test", "other", ModeNone, nil, nil},
		{"bogus TLSA", "bogus.dane.test", "bogus-mx.dane.test", "good", ModeNone, nil, dns.ErrBogus},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Lookup(context.Background(), resolver, tc.domain, tc.host)
			if tc.lookupErr != nil {
				if !errors.Is(err, tc.lookupErr) {
					t.Fatalf("Lookup: %+v %v, want %v", p, err, tc.lookupErr)
				}
				return
			}
			if err != nil || p.Mode != tc.mode {
				t.Fatalf("Lookup: %+v %v, want mode %v", p, err, tc.mode)
			}
			if p.Mode != ModeVerify {
				return
			}
			err = handshake(p, servers[tc.server])
			switch want := tc.err.(type) {
			case nil:
				if err != nil {
					t.Errorf("handshake refused: %v", err)
				}
			case x509.HostnameError:
				if !errors.As(err, &want) {
					t.Errorf("handshake: %v, want a host name mismatch", err)
				}
			default:
				if !errors.Is(err, tc.err) {
					t.Errorf("handshake: %v, want %v", err, tc.err)
				}
			}
		})
	}
}
