package status

import (
	"crypto/tls"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"elit.local/elit/deliver"
	"elit.local/elit/queue"
	"elit.local/elit/tlsrpt"
	"elit.local/elit/userdb"
)

// TestGuard: only clients on private, loopback or link-local addresses,
// with user gokrazy and the password, get through.
func TestGuard(t *testing.T) {
	dir := t.TempDir()
	q, err := queue.Open(filepath.Join(dir, "queue"))
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Domain: "example.org", Hostname: "mx.example.org", Queue: q, Password: "s3cret",
		Loader: userdb.NewLoader(filepath.Join(dir, "none.json"), "", slog.New(slog.DiscardHandler), "example.org", nil),
		Log:    slog.New(slog.DiscardHandler)}
	h := s.Handler()
	for _, c := range []struct {
		remote, user, password string
		code                   int
	}{
		{"192.168.1.10:5000", "gokrazy", "s3cret", http.StatusOK},
		{"127.0.0.1:5000", "gokrazy", "s3cret", http.StatusOK},
		{"[fe80::1]:5000", "gokrazy", "s3cret", http.StatusOK},
		{"[::ffff:10.0.0.1]:5000", "gokrazy", "s3cret", http.StatusOK},
		{"203.0.113.7:5000", "gokrazy", "s3cret", http.StatusForbidden},
		{"192.168.1.10:5000", "gokrazy", "wrong", http.StatusUnauthorized},
		{"192.168.1.10:5000", "root", "s3cret", http.StatusUnauthorized},
		{"192.168.1.10:5000", "", "", http.StatusUnauthorized},
	} {
		req := httptest.NewRequest("GET", "/status.json", nil)
		req.RemoteAddr = c.remote
		if c.user != "" {
			req.SetBasicAuth(c.user, c.password)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != c.code {
			t.Errorf("%s as %q/%q: %d, want %d", c.remote, c.user, c.password, w.Code, c.code)
		}
		if c.code == http.StatusOK && !strings.Contains(w.Body.String(), `"domain":"example.org"`) {
			t.Errorf("%s: %s", c.remote, w.Body)
		}
	}
}

// TestPutDBOverTLSOnly: PUT /db, which carries the users' secrets, is
// refused over plain HTTP unless the server says otherwise; over TLS a bad
// database gets as far as the check.
func TestPutDBOverTLSOnly(t *testing.T) {
	dir := t.TempDir()
	q, err := queue.Open(filepath.Join(dir, "queue"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name        string
		tls, plain  bool
		code        int
		bodyContain string
	}{
		{"plain", false, false, http.StatusForbidden, "only over HTTPS"},
		{"plain allowed", false, true, http.StatusUnprocessableEntity, "refused"},
		{"TLS", true, false, http.StatusUnprocessableEntity, "refused"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := &Server{Domain: "example.org", Queue: q, Password: "pw", PlainDBPush: c.plain,
				Loader: userdb.NewLoader(filepath.Join(dir, "none.json"), "", slog.New(slog.DiscardHandler), "example.org", nil),
				Log:    slog.New(slog.DiscardHandler)}
			req := httptest.NewRequest("PUT", "/db", strings.NewReader(`[{"name":"x","mailboxes":["not an address"]}]`))
			req.RemoteAddr = "192.168.1.10:5000"
			req.SetBasicAuth("gokrazy", "pw")
			if c.tls {
				req.TLS = &tls.ConnectionState{}
			}
			w := httptest.NewRecorder()
			s.Handler().ServeHTTP(w, req)
			if w.Code != c.code || !strings.Contains(w.Body.String(), c.bodyContain) {
				t.Errorf("%d %s, want %d with %q", w.Code, w.Body, c.code, c.bodyContain)
			}
		})
	}
}

// TestTLSSection: the TLS reports received and the destinations show on
// the page (escaped: a report's organization name is anybody's text).
func TestTLSSection(t *testing.T) {
	dir := t.TempDir()
	q, err := queue.Open(filepath.Join(dir, "queue"))
	if err != nil {
		t.Fatal(err)
	}
	day := time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC)
	s := &Server{Domain: "example.org", Hostname: "mx.example.org", Queue: q, Password: "pw",
		Loader: userdb.NewLoader(filepath.Join(dir, "none.json"), "", slog.New(slog.DiscardHandler), "example.org", nil),
		TLSReports: func() []tlsrpt.ReportSummary {
			return []tlsrpt.ReportSummary{{Received: day, Organization: "<b>Big Mail</b>", ReportID: "r1", Start: day, End: day.Add(24 * time.Hour),
				Domains: []string{"example.org"}, Successful: 41, Failed: 2, Failures: map[string]int64{"certificate-expired": 2}}}
		},
		Destinations: func() []deliver.DestinationTLS {
			return []deliver.DestinationTLS{{Domain: "example.net", Host: "mx.example.net", STARTTLS: true, REQUIRETLS: true, Updated: day}}
		},
		Log: slog.New(slog.DiscardHandler)}
	for path, want := range map[string][]string{
		"/":            {"&lt;b&gt;Big Mail&lt;/b&gt;", "certificate-expired: 2", "<td>41</td>", "mx.example.net", "<td>yes</td><td>yes</td>"},
		"/status.json": {`"organization":"\u003cb\u003eBig Mail\u003c/b\u003e"`, `"domain":"example.net"`, `"requiretls":true`},
	} {
		req := httptest.NewRequest("GET", path, nil)
		req.RemoteAddr = "127.0.0.1:5000"
		req.SetBasicAuth("gokrazy", "pw")
		w := httptest.NewRecorder()
		s.Handler().ServeHTTP(w, req)
		for _, x := range want {
			if !strings.Contains(w.Body.String(), x) {
				t.Errorf("%s lacks %q:\n%s", path, x, w.Body)
			}
		}
	}
}
