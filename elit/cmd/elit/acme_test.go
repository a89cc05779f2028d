package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"elit.local/elit/mtasts"
)

func waitLogCount(t *testing.T, s *proc, text string, n int, timeout time.Duration) {
	t.Helper()
	for end := time.Now().Add(timeout); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if strings.Count(s.logText(), text) >= n {
			return
		}
	}
	t.Fatalf("no %q in the log after %v:\n%s", text, timeout, s.logText())
}

// TestACME gets the host name's certificate from Pebble by TLS-ALPN-01,
// serves it on the submission ports, and finds it again in the state
// directory after a restart with Pebble gone.
func TestACME(t *testing.T) {
	dnsAddr := loopbackDNS(t)
	p := startPebble(t, dnsAddr)
	pw := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(pw, []byte("pw\n"), 0o600)
	s := startServer(t, "-http-addr", "127.0.0.1:0", "-http-password-file", pw, "-acme", "-acme-directory", p.directory, "-acme-ca-file", p.minica,
		"-acme-tls-addr", fmt.Sprintf("127.0.0.1:%d", p.tlsPort), "-acme-email", "postmaster@example.org")
	waitLogCount(t, s, "ACME certificate obtained", 1, time.Minute)
	roots := p.root(t)
	check := func() {
		t.Helper()
		c, err := tls.Dial("tcp", s.subs, &tls.Config{RootCAs: roots, ServerName: "mx.example.org"})
		if err != nil {
			t.Fatalf("TLS to submissions with Pebble's root: %v", err)
		}
		defer c.Close()
		// No server name at all, as many SMTP clients do: the same
		// certificate.
		raw, err := tls.Dial("tcp", s.subs, &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		defer raw.Close()
		leaf := raw.ConnectionState().PeerCertificates[0]
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: "mx.example.org", Intermediates: pool(raw.ConnectionState().PeerCertificates[1:])}); err != nil {
			t.Fatalf("without SNI: %v", err)
		}
	}
	check()
	if st := fetchStatus(t, s, "pw"); st.Cert.Source != "acme" || !slices.Contains(st.Cert.Names, "mx.example.org") || !slices.Contains(st.Cert.Names, "mta-sts.example.org") {
		t.Fatalf("status page certificate: %+v", st.Cert)
	}
	// Our MTA-STS policy (published in mode testing by default) on port
	// 443 with the ACME certificate, fetched as a sender would.
	f := &mtasts.Fetcher{Roots: roots, DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		if addr != "mta-sts.example.org:443" {
			return nil, fmt.Errorf("dial %s: not in this test", addr)
		}
		var d net.Dialer
		return d.DialContext(ctx, network, fmt.Sprintf("127.0.0.1:%d", p.tlsPort))
	}}
	pol, text, err := f.Fetch(context.Background(), "example.org")
	if err != nil || pol.Mode != mtasts.Testing || !pol.Match("mx.example.org") {
		t.Fatalf("our MTA-STS policy: %+v %v\n%s", pol, err, text)
	}
	if _, _, err := f.Fetch(context.Background(), "other.example"); err == nil {
		t.Fatal("a policy for a domain not ours")
	}
	p.stop()
	s.stop()
	s.start()
	waitLogCount(t, s, "ACME certificate obtained", 2, 30*time.Second)
	check()
	if _, err := os.Stat(filepath.Join(s.state, "acme", "acme_account+key")); err != nil {
		t.Fatalf("the ACME account key is not in the state directory: %v", err)
	}
}

// TestACMEHTTP01 gets the certificate by HTTP-01 alone (no TLS-ALPN-01
// listener, as where port 443 is taken).
func TestACMEHTTP01(t *testing.T) {
	p := startPebble(t, loopbackDNS(t))
	s := startServer(t, "-acme", "-acme-directory", p.directory, "-acme-ca-file", p.minica,
		"-acme-tls-addr", "", "-acme-http-addr", fmt.Sprintf("127.0.0.1:%d", p.httpPort))
	waitLogCount(t, s, "ACME certificate obtained", 1, time.Minute)
	c, err := tls.Dial("tcp", s.subs, &tls.Config{RootCAs: p.root(t), ServerName: "mx.example.org"})
	if err != nil {
		t.Fatalf("TLS to submissions with Pebble's root: %v", err)
	}
	c.Close()
}

// pool is a certificate pool of certs.
func pool(certs []*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p
}
