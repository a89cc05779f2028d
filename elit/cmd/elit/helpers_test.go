package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"elit.local/elit/queue"
	"elit.local/elit/userdb"
	"elit.local/internal/testbin"
)

// The end-to-end tests run the real elit binary on loopback ports and talk
// to it with swaks, msmtp and gsasl (make test installs them), and with a
// raw client where byte-exact input matters.

func TestMain(m *testing.M) { os.Exit(testbin.Run(m)) }

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for range 300 {
		if cond() {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

func elitBinary(t *testing.T) string {
	t.Helper()
	return testbin.Build(t, ".")
}

func needTools(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed: make test installs it (apt-get install swaks msmtp gsasl)", tool)
		}
	}
}

// Test users: din (every secret, password "demo"), bob ("bobpw"), the list
// team (din and an outside mailbox) and the alias-only name "noreply".
const (
	dinPassword = "demo"
	bobPassword = "bobpw"
)

var (
	secretsOnce sync.Once
	dinSecrets  userdb.Secrets
	bobSecrets  userdb.Secrets
)

func testDB(t *testing.T, extra ...map[string]any) []byte {
	t.Helper()
	secretsOnce.Do(func() {
		dinSecrets, _ = userdb.Hash(dinPassword, true)
		bobSecrets, _ = userdb.Hash(bobPassword, false)
	})
	entries := []map[string]any{
		{"name": "din", "password": dinSecrets.Password, "scram-sha-256": dinSecrets.ScramSHA256,
			"scram-sha-1": dinSecrets.ScramSHA1, "cram-md5": dinSecrets.CramMD5, "mailboxes": []string{"Romain <romain@example.com>"}},
		{"name": "bob", "password": bobSecrets.Password, "mailboxes": []string{"bob@example.net"}},
		{"name": "team", "mailboxes": []string{"din@example.org", "hannes@example.net"}},
	}
	entries = append(entries, extra...)
	b, err := json.Marshal(entries)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// testCert makes a certificate for mx.example.org and 127.0.0.1, so that
// the clients can verify it with the file as their trust anchor.
func testCert(t *testing.T, dir string) (certPath, keyPath string) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(42), DNSNames: []string{"mx.example.org", "localhost"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:   time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kd, _ := x509.MarshalPKCS8PrivateKey(key)
	certPath, keyPath = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kd}), 0o600)
	return certPath, keyPath
}

// run runs a client program and returns its exit code and output.
func runTool(t *testing.T, stdin string, name string, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
	timer := time.AfterFunc(60*time.Second, func() { cmd.Process.Kill() })
	defer timer.Stop()
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return code, string(out)
}

func openQueue(t *testing.T, s *proc) *queue.Store {
	t.Helper()
	q, err := queue.Attach(filepath.Join(s.state, "queue"))
	if err != nil {
		t.Fatal(err)
	}
	return q
}

// waitLog waits for substr in s's log.
func waitLog(t *testing.T, s *proc, substr string) {
	t.Helper()
	for range 200 {
		if strings.Contains(s.logText(), substr) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("log never said %q:\n%s", substr, s.logText())
}
