package main

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"elit.local/elit/status"
)

var statusRe = regexp.MustCompile(`msg="status page listening" job=http addr=\S+ url=(\S+)/`)

// statusClient talks to the status page, HTTPS with the server's
// certificate (self-signed in some tests: elit-image's tests pin it).
var statusClient = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}

// TestStatusPage drives the status page and PUT /db of a running elit.
func TestStatusPage(t *testing.T) {
	pwFile := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(pwFile, []byte("s3cret\n"), 0o600)
	s := startServer(t, "-http-addr", "127.0.0.1:0", "-http-password-file", pwFile)
	base := statusURL(t, s)
	do := func(method, path, password string, body []byte) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, bytes.NewReader(body))
		if password != "" {
			req.SetBasicAuth("gokrazy", password)
		}
		resp, err := statusClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := do("GET", "/status.json", "", nil); code != http.StatusUnauthorized {
		t.Fatalf("no password: %d", code)
	}
	if code, _ := do("GET", "/status.json", "wrong", nil); code != http.StatusUnauthorized {
		t.Fatalf("wrong password: %d", code)
	}
	code, body := do("GET", "/status.json", "s3cret", nil)
	var st status.Status
	if code != 200 || json.Unmarshal([]byte(body), &st) != nil {
		t.Fatalf("status.json: %d %s", code, body)
	}
	if st.Version != version || st.Domain != "example.org" || st.Database.Addresses != 3 || len(st.DNSRecord) == 0 ||
		st.Cert.Source != "file" || !slices.Contains(st.Cert.Names, "mx.example.org") || st.Cert.NotAfter.IsZero() {
		t.Fatalf("status: %+v", st)
	}
	code, body = do("GET", "/", "s3cret", nil)
	if code != 200 || !strings.Contains(body, "MX 10 mx.example.org.") || !strings.Contains(body, "3 addresses") {
		t.Fatalf("page: %d\n%s", code, body)
	}

	code, body = do("PUT", "/db", "s3cret", []byte(`[{"name":"x","mailboxes":["not an address"]},{"name":"x","mailboxes":[]}]`))
	if code != http.StatusUnprocessableEntity || strings.Count(body, "\n") < 3 {
		t.Fatalf("bad database: %d\n%s", code, body)
	}
	if c, _ := s.swaks(s.mx, "--to", "team@example.org", "--quit-after", "RCPT"); c != 0 {
		t.Fatal("the refused database replaced the one in use")
	}
	more := testDB(t, map[string]any{"name": "ops", "mailboxes": []string{"ops@example.net"}})
	code, body = do("PUT", "/db", "s3cret", more)
	if code != 200 || !strings.Contains(body, "4 addresses") {
		t.Fatalf("good database: %d %s", code, body)
	}
	if c, out := s.swaks(s.mx, "--to", "ops@example.org", "--quit-after", "RCPT"); c != 0 {
		t.Fatalf("the pushed user is unknown:\n%s", out)
	}
	if got, _ := os.ReadFile(s.dbPath); !bytes.Equal(got, more) {
		t.Fatal("the database file does not hold the pushed database")
	}
}

// statusURL is the status page of s, from its log.
func statusURL(t *testing.T, s *proc) string {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if m := statusRe.FindStringSubmatch(s.logText()); m != nil {
			return m[1]
		}
	}
	t.Fatalf("no status page:\n%s", s.logText())
	return ""
}

// fetchStatus reads status.json of s (started with -http-password-file
// holding password).
func fetchStatus(t *testing.T, s *proc, password string) status.Status {
	t.Helper()
	req, _ := http.NewRequest("GET", statusURL(t, s)+"/status.json", nil)
	req.SetBasicAuth("gokrazy", password)
	resp, err := statusClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st status.Status
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	return st
}
