package main

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"elit.local/elit/userdb"
	"elit.local/internal/testbin"
)

// The end-to-end tests run the real elit binary on loopback ports and talk
// to it with swaks, msmtp and gsasl (make test installs them), and with a
// raw client where byte-exact input matters.

func TestMain(m *testing.M) { os.Exit(testbin.Run(m)) }

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

// server is a running elit serve.
type server struct {
	t                  *testing.T
	cmd                *exec.Cmd
	dir, state, dbPath string
	cert               string
	mx, sub, subs      string
	args               []string
	mu                 sync.Mutex
	log                bytes.Buffer
	done               chan struct{}
}

var listenRe = regexp.MustCompile(`msg=listening mode=(\w+) addr=(\S+)`)

// startServer starts elit with the test database, a test certificate and
// fast failure delays; args are added (and win).
func startServer(t *testing.T, args ...string) *server {
	t.Helper()
	dir := t.TempDir()
	s := &server{t: t, dir: dir, state: filepath.Join(dir, "state"), dbPath: filepath.Join(dir, "users.json")}
	if err := os.WriteFile(s.dbPath, testDB(t), 0o600); err != nil {
		t.Fatal(err)
	}
	var key string
	s.cert, key = testCert(t, dir)
	s.args = append([]string{"serve", "-domain", "example.org", "-hostname", "mx.example.org",
		"-db-json", s.dbPath, "-state", s.state, "-tls-cert", s.cert, "-tls-key", key,
		"-mx-addr", "127.0.0.1:0", "-submission-addr", "127.0.0.1:0", "-submissions-addr", "127.0.0.1:0",
		"-auth-failure-delay", "1ms", "-db-check-interval", "0", "-deliver=false"}, args...)
	s.start()
	t.Cleanup(s.stop)
	return s
}

func (s *server) start() {
	t := s.t
	t.Helper()
	s.cmd = exec.Command(elitBinary(t), s.args...)
	stderr, err := s.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s.done = make(chan struct{})
	addrs := make(chan [2]string, 3)
	go func() {
		defer close(s.done)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			s.mu.Lock()
			s.log.WriteString(line + "\n")
			s.mu.Unlock()
			if m := listenRe.FindStringSubmatch(line); m != nil {
				addrs <- [2]string{m[1], m[2]}
			}
		}
		io.Copy(io.Discard, stderr)
		s.cmd.Wait()
	}()
	deadline := time.After(20 * time.Second)
	for n := 0; n < 3; n++ {
		select {
		case a := <-addrs:
			switch a[0] {
			case "mx":
				s.mx = a[1]
			case "submission":
				s.sub = a[1]
			case "submissions":
				s.subs = a[1]
			}
		case <-s.done:
			t.Fatalf("elit exited: %s\n%s", s.cmd.ProcessState, s.logText())
		case <-deadline:
			t.Fatalf("elit did not start listening:\n%s", s.logText())
		}
	}
}

func (s *server) logText() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.log.String()
}

func (s *server) stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(15 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
	}
	s.cmd = nil
}

func (s *server) kill() {
	s.cmd.Process.Kill()
	<-s.done
	s.cmd = nil
}

func (s *server) port(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
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

// swaks runs swaks against addr with args.
func (s *server) swaks(addr string, args ...string) (int, string) {
	s.t.Helper()
	return runTool(s.t, "", "swaks", append([]string{"--server", addr, "--helo", "client.example.net",
		"--timeout", "30", "--tls-verify", "--tls-ca-path", s.cert}, args...)...)
}

// rawClient speaks SMTP byte by byte.
type rawClient struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *rawClient {
	t.Helper()
	rc := dialNoGreeting(t, addr)
	rc.expect("220")
	return rc
}

// mxData connects to addr and sends EHLO, MAIL FROM:from, RCPT TO:to and
// DATA in one pipelined group (from and to may carry parameters); it
// returns the client after the 354, ready for the message.
func mxData(t *testing.T, addr, from, to string) *rawClient {
	t.Helper()
	c := dialRaw(t, addr)
	c.send("EHLO client.example.net\r\nMAIL FROM:" + from + "\r\nRCPT TO:" + to + "\r\nDATA\r\n")
	c.expect("250")
	c.expect("250")
	c.expect("250")
	c.expect("354")
	return c
}

// dialRawTLS connects to the implicit-TLS port.
func dialRawTLS(t *testing.T, s *server) *rawClient {
	t.Helper()
	rc := dialNoGreeting(t, s.subs)
	rc.tlsUp(s.cert)
	rc.expect("220")
	return rc
}

func dialNoGreeting(t *testing.T, addr string) *rawClient {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(60 * time.Second))
	t.Cleanup(func() { c.Close() })
	return &rawClient{t: t, conn: c, r: bufio.NewReader(c)}
}

func (c *rawClient) send(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c.conn, s); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// reply reads one (possibly multi-line) reply and returns it whole.
func (c *rawClient) reply() (string, error) {
	var b strings.Builder
	for {
		line, err := c.r.ReadString('\n')
		b.WriteString(line)
		if err != nil {
			return b.String(), err
		}
		if len(line) < 4 || line[3] != '-' {
			return b.String(), nil
		}
	}
}

func (c *rawClient) expect(prefix string) string {
	c.t.Helper()
	r, err := c.reply()
	if err != nil || !strings.HasPrefix(r, prefix) {
		c.t.Fatalf("want %s, got %q (%v)", prefix, r, err)
	}
	return r
}

func (c *rawClient) startTLS(cert string) {
	c.t.Helper()
	c.send("STARTTLS\r\n")
	c.expect("220")
	c.tlsUp(cert)
}

func (c *rawClient) tlsUp(cert string) {
	c.t.Helper()
	pool := x509.NewCertPool()
	pem, _ := os.ReadFile(cert)
	pool.AppendCertsFromPEM(pem)
	tc := tls.Client(c.conn, &tls.Config{ServerName: "mx.example.org", RootCAs: pool})
	if err := tc.Handshake(); err != nil {
		c.t.Fatalf("TLS: %v", err)
	}
	c.conn = tc
	c.r = bufio.NewReader(tc)
}

var queuedRe = regexp.MustCompile(`Queued as (\S+)`)

// queued returns the queue IDs in a transcript.
func queued(s string) []string {
	var ids []string
	for _, m := range queuedRe.FindAllStringSubmatch(s, -1) {
		ids = append(ids, m[1])
	}
	return ids
}
