package certs

import (
	"bytes"
	"crypto/x509"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

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

	// The first pair as given files.
	if err := os.WriteFile(filepath.Join(dir, "given.pem"), first, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = New(Config{Hostname: "mx.example.org", CertFile: filepath.Join(dir, "given.pem"), KeyFile: filepath.Join(dir, "selfsigned.key")}, log)
	if err == nil || !strings.Contains(err.Error(), "TLS certificate") {
		t.Errorf("a certificate with another host's key: %v", err)
	}
	mx, err := New(Config{Hostname: "mail.example.net", CertFile: filepath.Join(dir, "selfsigned.pem"), KeyFile: filepath.Join(dir, "selfsigned.key")}, log)
	if err != nil || mx.Info().Source != "file" || !bytes.Equal(mx.CertDER(), other.CertDER()) {
		t.Errorf("given files: %v, %+v", err, mx)
	}
}
