package mtasts

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"elit.local/elit/internal/testlib"
)

// site is an HTTPS server on 127.0.0.1 standing for policy hosts, with
// a certificate of a test CA for names, and a Fetcher that trusts that
// CA and whose connections to any host's port 443 reach the server.
type site struct {
	srv     *httptest.Server
	roots   *x509.CertPool
	fetcher *Fetcher

	mu     sync.Mutex
	dialed []string // the addresses the fetcher asked for
}

func newSite(t *testing.T, h http.Handler, names ...string) *site {
	t.Helper()
	cert, pool := testlib.Certificate(names...)
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // failed handshakes are what some tests want
	srv.StartTLS()
	t.Cleanup(srv.Close)
	s := &site{srv: srv, roots: pool}
	s.fetcher = &Fetcher{Roots: pool, DialContext: s.dial}
	return s
}

// dial sends connections for host:443 to the server; nothing else is
// dialled (no test reaches beyond loopback).
func (s *site) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	s.mu.Lock()
	s.dialed = append(s.dialed, addr)
	s.mu.Unlock()
	if !strings.HasSuffix(addr, ":443") || !strings.HasPrefix(addr, "mta-sts.") {
		return nil, fmt.Errorf("test dialer: %s is not a policy host", addr)
	}
	var d net.Dialer
	return d.DialContext(ctx, network, s.srv.Listener.Addr().String())
}

func (s *site) dialedAddrs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.dialed...)
}

// policyServer serves policy texts by host, as a policy host would,
// counting the requests; its fields may change between requests.
type policyServer struct {
	mu       sync.Mutex
	policies map[string]string // by Host: the text served
	status   int               // 0: 200 (404 for an unknown host)
	ctype    string            // "": text/plain
	requests int
	hosts    []string
}

func (p *policyServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.requests++
	p.hosts = append(p.hosts, r.Host)
	text, ok := p.policies[r.Host]
	if r.URL.Path != WellKnownPath || !ok {
		http.NotFound(w, r)
		return
	}
	ctype := p.ctype
	if ctype == "" {
		ctype = "text/plain"
	}
	w.Header().Set("Content-Type", ctype)
	if p.status != 0 {
		w.WriteHeader(p.status)
	}
	fmt.Fprint(w, text)
}

func (p *policyServer) set(host, text string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.policies == nil {
		p.policies = map[string]string{}
	}
	p.policies[host] = text
}

func (p *policyServer) setStatus(code int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.status = code
}

func (p *policyServer) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.requests
}

// plainServer is an HTTP server without TLS on 127.0.0.1.
type plainServer struct{ srv *httptest.Server }

func newPlainServer(t *testing.T, h http.Handler) *plainServer {
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &plainServer{srv}
}

func (p *plainServer) dial(ctx context.Context, network, _ string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, network, p.srv.Listener.Addr().String())
}

// testCA makes a CA and a certificate it signs for names, both valid
// from an hour ago to an hour from now: the certificate chain of a
// server, the CA for Go clients and in PEM for others.
func testCA(t *testing.T, names ...string) (tls.Certificate, *x509.CertPool, []byte) {
	t.Helper()
	key := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	caKey, leafKey := key(), key()
	now := time.Now()
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkixName("elit test CA"),
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkixName(names[0]), DNSNames: names,
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &leafKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	return tls.Certificate{Certificate: [][]byte{leafDER, caDER}, PrivateKey: leafKey},
		pool, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
}

func pkixName(cn string) pkix.Name { return pkix.Name{CommonName: cn} }
