package server

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/smtp"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"elit.local/elit/config"
	"elit.local/elit/dns/dnstest"
	"elit.local/elit/internal/testlib"
	"elit.local/elit/status"
)

// testConfig is a server on loopback ports with its state in a temporary
// directory, the user database a JSON file (din@example.org forwards to
// romain@example.com), delivering through smarthost.
func testConfig(t *testing.T, smarthost string) *config.Config {
	t.Helper()
	dir := t.TempDir()
	db := filepath.Join(dir, "users.json")
	if err := os.WriteFile(db, []byte(`[{"name": "din", "mailboxes": ["Romain <romain@example.com>"]}]`), 0o600); err != nil {
		t.Fatal(err)
	}
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := config.Default()
	c.Domain, c.Hostname, c.Version = "example.org", "mx.example.org", "test"
	c.State.Dir = filepath.Join(dir, "state")
	c.Database.JSON = db
	c.Receive.MXAddr, c.Receive.SubmissionAddr, c.Receive.SubmissionsAddr = "127.0.0.1:0", "127.0.0.1:0", ""
	c.Delivery.Smarthost = smarthost
	// Delivery goes to the smarthost; the checks of received mail ask a
	// DNS server of the test's own, which knows no name.
	c.Delivery.Resolver = dnstest.Serve(t, dnstest.Zone{})
	c.HTTP.StatusAddr, c.HTTP.PasswordFile = "127.0.0.1:0", pw
	return c
}

var (
	mxRe     = regexp.MustCompile(`msg=listening mode=mx addr=(\S+)`)
	statusRe = regexp.MustCompile(`msg="status page listening" job=http addr=\S+ url=(\S+)/`)
)

// waitLog waits for re in the log and returns its first group.
func waitLog(t *testing.T, log *testlib.Buffer, re *regexp.Regexp) string {
	t.Helper()
	for end := time.Now().Add(20 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if m := re.FindStringSubmatch(log.String()); m != nil {
			return m[1]
		}
	}
	t.Fatalf("the log never matched %s:\n%s", re, log)
	return ""
}

// TestRunDeliversMessage starts the whole server in-process from a
// configuration, sends a message to its MX and finds it delivered at the
// smarthost (forwarded, with an SRS sender); the status page counts the
// database; when the context ends, Run returns.
func TestRunDeliversMessage(t *testing.T) {
	sink, got := startSink(t)
	cfg := testConfig(t, sink)
	var logb testlib.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg, slog.New(slog.NewTextHandler(&logb, nil))) }()

	mx := waitLog(t, &logb, mxRe)
	c, err := smtp.Dial(mx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("client.example.net"); err != nil {
		t.Fatal(err)
	}
	if err := c.Mail("sender@example.net"); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("din@example.org"); err != nil {
		t.Fatal(err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("From: sender@example.net\r\nSubject: in-process\r\n\r\nhello\r\n"))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	c.Quit()

	select {
	case m := <-got:
		if !strings.HasPrefix(m.from, "SRS0=") || !strings.HasSuffix(m.from, "@example.org") ||
			len(m.to) != 1 || m.to[0] != "romain@example.com" ||
			!strings.Contains(m.data, "by mx.example.org (Elit)") || !strings.Contains(m.data, "Subject: in-process") {
			t.Errorf("delivered from %s to %v:\n%s", m.from, m.to, m.data)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("nothing delivered:\n%s", logb.String())
	}

	// The status page is HTTPS with the server's self-signed certificate.
	req, _ := http.NewRequest("GET", waitLog(t, &logb, statusRe)+"/status.json", nil)
	req.SetBasicAuth("gokrazy", "s3cret")
	insecure := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, err := insecure.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var st status.Status
	err = json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if err != nil || st.Version != "test" || st.Database.Addresses != 1 || st.Cert.Source != "self-signed" {
		t.Errorf("status: %+v, %v", st, err)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not return after the context ended")
	}
	if !strings.Contains(logb.String(), "msg=configuration") || !strings.Contains(logb.String(), "elit stopped") {
		t.Errorf("the log lacks the configuration or the stop:\n%s", logb.String())
	}
}

// TestRunShortKey: with a short STATE/srs.key the server refuses to start
// (an invalid configuration naming the file) and leaves the file alone.
func TestRunShortKey(t *testing.T) {
	cfg := testConfig(t, "127.0.0.1:1")
	if err := os.MkdirAll(cfg.State.Dir, 0o700); err != nil {
		t.Fatal(err)
	}
	keyPath := cfg.State.Key()
	if err := os.WriteFile(keyPath, []byte("short\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := Run(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if !config.IsInvalid(err) || !strings.Contains(err.Error(), keyPath) || !strings.Contains(err.Error(), "at least 16") {
		t.Errorf("Run: %v; want an invalid configuration naming the key file", err)
	}
	if got, _ := os.ReadFile(keyPath); string(got) != "short\n" {
		t.Errorf("the key file was replaced")
	}
}
