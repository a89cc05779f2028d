package certs

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"elit.local/elit/dane"
	"elit.local/elit/dns"
	"elit.local/elit/internal/testlib"
)

// TestSelfSigned: without files, a certificate for the host name is made
// once, logged and kept; it is made again for another host name; given
// files are served as they are.
func TestSelfSigned(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	var logb testlib.Buffer
	log := slog.New(slog.NewTextHandler(&logb, nil))
	cfg := Config{Hostname: "mx.example.org", SelfSignedDir: dir}
	s, err := New(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(s.CertDER())
	if err != nil || leaf.VerifyHostname("mx.example.org") != nil || !strings.Contains(logb.String(), "generated a self-signed TLS certificate") {
		t.Fatalf("made %v (%v); log:\n%s", leaf, err, logb.String())
	}
	if info := s.Info(); info.Source != "self-signed" || len(info.Names) != 1 || info.Names[0] != "mx.example.org" {
		t.Errorf("info %+v", info)
	}
	first, _ := os.ReadFile(filepath.Join(dir, "selfsigned.pem"))
	again, err := New(cfg, slog.New(slog.DiscardHandler))
	if err != nil || !bytes.Equal(again.CertDER(), s.CertDER()) {
		t.Errorf("the certificate was not reused (%v)", err)
	}
	other, err := New(Config{Hostname: "mail.example.net", SelfSignedDir: dir}, slog.New(slog.DiscardHandler))
	if err != nil || bytes.Equal(other.CertDER(), s.CertDER()) {
		t.Errorf("no new certificate for another host name (%v)", err)
	}
	got, err := other.GetCertificate(nil)
	if err != nil || !bytes.Equal(got.Certificate[0], other.CertDER()) {
		t.Errorf("GetCertificate: %v", err)
	}

	// The first pair as given files; a key that is not the certificate's.
	if err := os.WriteFile(filepath.Join(dir, "given.pem"), first, 0o600); err != nil {
		t.Fatal(err)
	}
	otherDir := t.TempDir()
	if _, err := LoadKey(otherDir, log); err != nil {
		t.Fatal(err)
	}
	_, err = New(Config{Hostname: "mx.example.org", CertFile: filepath.Join(dir, "given.pem"), KeyFile: filepath.Join(otherDir, "selfsigned.key")}, log)
	if err == nil || !strings.Contains(err.Error(), "TLS certificate") {
		t.Errorf("a certificate with another key: %v", err)
	}
	mx, err := New(Config{Hostname: "mail.example.net", CertFile: filepath.Join(dir, "selfsigned.pem"), KeyFile: filepath.Join(dir, "selfsigned.key")}, log)
	if err != nil || mx.Info().Source != "file" || !bytes.Equal(mx.CertDER(), other.CertDER()) {
		t.Errorf("given files: %v, %+v", err, mx)
	}
}

// TestStableKey: the server's key is made once and kept: the
// self-signed certificate is made again (another host name, expired)
// for the same key, so the TLSA record stays; a key that cannot be read
// stops the server rather than be replaced; a given certificate has the
// TLSA record of its own key.
func TestStableKey(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	log := slog.New(slog.DiscardHandler)
	now := time.Now()
	clock := func() time.Time { return now }
	first, err := New(Config{Hostname: "mx.example.org", SelfSignedDir: dir, Now: clock}, log)
	if err != nil {
		t.Fatal(err)
	}
	tlsa := first.TLSA()
	leaf, _ := x509.ParseCertificate(first.CertDER())
	if want := dane.Record(leaf, 3, 1, 1); tlsa.String() != want.String() || !strings.HasPrefix(tlsa.String(), "3 1 1 ") || len(tlsa.Data) != 32 {
		t.Fatalf("TLSA %v, want %v", tlsa, want)
	}
	if first.Info().TLSA != tlsa.String() {
		t.Errorf("Info().TLSA = %q", first.Info().TLSA)
	}
	for _, tc := range []struct {
		name     string
		hostname string
		at       time.Time
		newCert  bool
	}{
		{"restart", "mx.example.org", now, false},
		{"another host name", "mail.example.net", now, true},
		{"the certificate expired", "mail.example.net", now.AddDate(6, 0, 0), true},
	} {
		s, err := New(Config{Hostname: tc.hostname, SelfSignedDir: dir, Now: func() time.Time { return tc.at }}, log)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if s.TLSA().String() != tlsa.String() {
			t.Errorf("%s: TLSA %v, want %v (the key changed)", tc.name, s.TLSA(), tlsa)
		}
		if got := !bytes.Equal(s.CertDER(), first.CertDER()); got != tc.newCert {
			t.Errorf("%s: new certificate %v, want %v", tc.name, got, tc.newCert)
		}
		leaf, _ := x509.ParseCertificate(s.CertDER())
		if err := dane.Verify([]dns.TLSA{tlsa}, []*x509.Certificate{leaf}, nil, tc.at); err != nil {
			t.Errorf("%s: the certificate does not match the TLSA record: %v", tc.name, err)
		}
	}
	// A damaged key is not replaced.
	os.WriteFile(filepath.Join(dir, "selfsigned.key"), []byte("garbage"), 0o600)
	if _, err := New(Config{Hostname: "mx.example.org", SelfSignedDir: dir}, log); err == nil || !strings.Contains(err.Error(), "TLS key") {
		t.Errorf("a damaged key: %v", err)
	}
	// Files: their key's record.
	cert, _ := testlib.Certificate("mx.example.org")
	certPath, keyPath := filepath.Join(t.TempDir(), "c.pem"), filepath.Join(t.TempDir(), "k.pem")
	kd, _ := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}), 0o600)
	os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kd}), 0o600)
	f, err := New(Config{Hostname: "mx.example.org", CertFile: certPath, KeyFile: keyPath, SelfSignedDir: t.TempDir()}, log)
	if err != nil {
		t.Fatal(err)
	}
	if want := dane.Record(cert.Leaf, 3, 1, 1); f.TLSA().String() != want.String() {
		t.Errorf("file TLSA %v, want %v", f.TLSA(), want)
	}
}

// TestACMECache: a cached certificate is used only when it is valid, for
// the host name and for the server's key (one of an earlier version,
// made by autocert with a key of its own, is ordered again).
func TestACMECache(t *testing.T) {
	dir := t.TempDir()
	log := slog.New(slog.DiscardHandler)
	key, err := LoadKey(filepath.Join(dir, "tls"), log)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	a, err := newACMEIssuer(ACME{CacheDir: filepath.Join(dir, "acme")}, "mx.example.org", key, func() time.Time { return now }, log)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.cached(); err == nil {
		t.Fatal("an empty cache: no error")
	}
	other, _ := testlib.Certificate("mx.example.org")
	mine, err := selfSignedDER("mx.example.org", key, now.Add(-time.Hour), now.Add(90*24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	otherName, _ := selfSignedDER("mail.example.net", key, now.Add(-time.Hour), now.Add(time.Hour))
	expired, _ := selfSignedDER("mx.example.org", key, now.Add(-2*time.Hour), now.Add(-time.Hour))
	write := func(k any, der []byte) {
		kd, _ := x509.MarshalPKCS8PrivateKey(k)
		data := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kd})
		data = append(data, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
		os.WriteFile(filepath.Join(dir, "acme", "mx.example.org"), data, 0o600)
	}
	for _, tc := range []struct {
		name string
		key  any
		der  []byte
		ok   bool
	}{
		{"autocert's own key", other.PrivateKey, other.Certificate[0], false},
		{"another name", key, otherName, false},
		{"expired", key, expired, false},
		{"the server's key", key, mine, true},
	} {
		write(tc.key, tc.der)
		cert, err := a.cached()
		if (err == nil) != tc.ok {
			t.Errorf("%s: %v", tc.name, err)
		}
		if err == nil && !bytes.Equal(cert.Certificate[0], mine) {
			t.Errorf("%s: another certificate", tc.name)
		}
	}
	// The store/load round trip keeps the autocert layout.
	if err := a.store([][]byte{mine}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.cached(); err != nil {
		t.Errorf("after store: %v", err)
	}
	// Renewal when a third of the lifetime is left, at most 30 days before.
	leaf, _ := x509.ParseCertificate(mine)
	if w := renewWait(leaf, now); w < 59*24*time.Hour || w > 61*24*time.Hour {
		t.Errorf("renewWait of a 90-day certificate = %v, want 60 days", w)
	}
	if w := renewWait(leaf, now.Add(89*24*time.Hour)); w != 0 {
		t.Errorf("renewWait near the end = %v", w)
	}
}

// TestServeHTTPSLimit: connections beyond maxHTTPSConns wait until one
// ends; the server keeps answering the others.
func TestServeHTTPSLimit(t *testing.T) {
	defer func(n int) { maxHTTPSConns = n }(maxHTTPSConns)
	maxHTTPSConns = 3
	src, err := New(Config{Hostname: "mx.example.org", SelfSignedDir: t.TempDir()}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go src.ServeHTTPS(ctx, l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	handshake := func() error {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: time.Second}, "tcp", l.Addr().String(),
			&tls.Config{InsecureSkipVerify: true, ServerName: "mx.example.org"})
		if err == nil {
			c.Close()
		}
		return err
	}
	if err := handshake(); err != nil {
		t.Fatal(err)
	}
	var idle []net.Conn // connections that say nothing
	for range maxHTTPSConns {
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		idle = append(idle, c)
	}
	time.Sleep(100 * time.Millisecond)
	c, err := net.Dial("tcp", l.Addr().String()) // the kernel queues it
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(500 * time.Millisecond))
	tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true, ServerName: "mx.example.org"})
	if err := tc.Handshake(); err == nil {
		t.Fatal("a connection over the limit was served")
	}
	c.Close()
	idle[0].Close()
	time.Sleep(100 * time.Millisecond)
	if err := handshake(); err != nil {
		t.Fatalf("after a connection ended: %v", err)
	}
	for _, c := range idle[1:] {
		c.Close()
	}
}
