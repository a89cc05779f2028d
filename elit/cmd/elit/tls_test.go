package main

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestServeSelfSigned: with no certificate given, one is made, logged,
// kept and reused.
func TestServeSelfSigned(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "users.json")
	os.WriteFile(db, testDB(t), 0o600)
	s := &proc{t: t, state: filepath.Join(dir, "state"), args: []string{"serve", "-domain", "example.org", "-hostname", "mx.example.org",
		"-db-json", db, "-state", filepath.Join(dir, "state"), "-mx-addr", "127.0.0.1:0", "-submission-addr", "127.0.0.1:0", "-submissions-addr", "127.0.0.1:0", "-deliver=false"}}
	s.start()
	t.Cleanup(s.stop)
	if !strings.Contains(s.logText(), "generated a self-signed TLS certificate") {
		t.Errorf("not logged:\n%s", s.logText())
	}
	certPath := filepath.Join(s.state, "tls", "selfsigned.pem")
	first, err := os.ReadFile(certPath)
	if err != nil {
		t.Fatal(err)
	}
	s.stop()
	s.log.Reset()
	s.start()
	again, _ := os.ReadFile(certPath)
	if string(again) != string(first) || strings.Contains(s.logText(), "generated") {
		t.Errorf("the certificate was not reused")
	}
	// It is what the server presents.
	tc, err := tls.Dial("tcp", s.subs, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	if err := tc.ConnectionState().PeerCertificates[0].VerifyHostname("mx.example.org"); err != nil {
		t.Error(err)
	}
}
