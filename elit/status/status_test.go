package status

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"elit.local/elit/queue"
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
