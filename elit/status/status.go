// Package status is the appliance's own small web page: what runs, the
// queue, the last database load, the certificate and the DNS records to
// publish (GET /, GET /status.json); and PUT /db, which replaces the user
// database (elit-image db push). It answers only clients on private,
// loopback or link-local addresses, with HTTP basic auth (user "gokrazy",
// the appliance's password), like gokrazy's own web UI.
package status

import (
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"time"

	"elit.local/elit/certs"
	"elit.local/elit/mailauth"
	"elit.local/elit/queue"
	"elit.local/elit/records"
	"elit.local/elit/userdb"
)

// Server serves the status page.
type Server struct {
	Version, Domain, Hostname string
	DBSource                  string // where the user database comes from
	Queue                     *queue.Store
	Loader                    *userdb.Loader
	Cert                      func() certs.Info // nil: not shown
	Keys                      *mailauth.Keys    // the DKIM keys; nil: none
	Boot                      Boot
	Password                  string
	Started                   time.Time
	Log                       *slog.Logger
}

// ReadPassword returns the first password found in files (trimmed).
func ReadPassword(files []string) (string, error) {
	for _, f := range files {
		b, err := os.ReadFile(f)
		if pw := strings.TrimSpace(string(b)); err == nil && pw != "" {
			return pw, nil
		}
	}
	return "", fmt.Errorf("no password in %s", strings.Join(files, " or "))
}

// Handler is the status page, status.json and PUT /db, behind the guard.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.page)
	mux.HandleFunc("GET /status.json", s.statusJSON)
	mux.HandleFunc("PUT /db", s.putDB)
	return s.guard(mux)
}

// guard lets through private-network clients with the right password.
func (s *Server) guard(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ap, err := netip.ParseAddrPort(r.RemoteAddr)
		ip := ap.Addr().Unmap()
		if err != nil || !(ip.IsPrivate() || ip.IsLoopback() || ip.IsLinkLocalUnicast()) {
			http.Error(w, "only from a private network", http.StatusForbidden)
			return
		}
		user, pw, ok := r.BasicAuth()
		if !ok || subtle.ConstantTimeCompare([]byte(user), []byte("gokrazy"))&
			subtle.ConstantTimeCompare([]byte(pw), []byte(s.Password)) != 1 {
			w.Header().Set("WWW-Authenticate", `Basic realm="elit"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// Status is what the page and status.json show.
type Status struct {
	Version   string     `json:"version"`
	Domain    string     `json:"domain"`
	Hostname  string     `json:"hostname"`
	Started   time.Time  `json:"started"`
	Queue     QueueStats `json:"queue"`
	Database  DBStatus   `json:"database"`
	DNSRecord []string   `json:"dns_records"`
	DKIM      []DKIMKey  `json:"dkim_keys"`
	Cert      certs.Info `json:"certificate"`
	// Boot is what the kernel command line says about the root file
	// system (on the appliance; zero elsewhere).
	Boot Boot `json:"boot"`
}

// DKIMKey is a DKIM key that signs our mail.
type DKIMKey struct {
	Domain    string    `json:"domain"`
	Selector  string    `json:"selector"`
	Algorithm string    `json:"algorithm"`
	Name      string    `json:"record_name"`
	Record    string    `json:"record"`
	Created   time.Time `json:"created"`
}

// QueueStats counts what is queued.
type QueueStats struct {
	Messages int       `json:"messages"`
	Pending  int       `json:"pending_recipients"`
	Held     int       `json:"held_recipients"`
	Oldest   time.Time `json:"oldest,omitzero"`
	Error    string    `json:"error,omitempty"`
}

// DBStatus is the user database in use and its last load.
type DBStatus struct {
	Source    string    `json:"source"`
	Addresses int       `json:"addresses"`
	Loaded    time.Time `json:"loaded"`
	FromCache bool      `json:"from_cache"`
	LastTry   time.Time `json:"last_try"`
	Error     string    `json:"error,omitempty"`
}

// Status is the state shown now.
func (s *Server) Status() Status {
	st := Status{Version: s.Version, Domain: s.Domain, Hostname: s.Hostname, Started: s.Started}
	msgs, err := s.Queue.List()
	if err != nil {
		st.Queue.Error = err.Error()
	}
	for _, m := range msgs {
		st.Queue.Messages++
		if st.Queue.Oldest.IsZero() || m.Received.Before(st.Queue.Oldest) {
			st.Queue.Oldest = m.Received
		}
		for _, r := range m.Recipients {
			switch r.Status {
			case queue.Pending:
				st.Queue.Pending++
			case queue.Held:
				st.Queue.Held++
			}
		}
	}
	info := s.Loader.Info()
	st.Database = DBStatus{Source: s.DBSource, Loaded: info.Loaded, FromCache: info.FromCache, LastTry: info.Time}
	if db := s.Loader.DB(); db != nil {
		st.Database.Addresses = db.Len()
	}
	if info.Err != nil {
		st.Database.Error = info.Err.Error()
	}
	var keys []mailauth.Key
	if s.Keys != nil {
		keys = s.Keys.For(s.Domain)
		for _, k := range s.Keys.All() {
			st.DKIM = append(st.DKIM, DKIMKey{k.Domain, k.Selector, k.Algorithm, k.RecordName(), k.Record, k.Created})
		}
	}
	for _, r := range records.For(s.Domain, s.Hostname, keys) {
		st.DNSRecord = append(st.DNSRecord, r.String())
	}
	if s.Cert != nil {
		st.Cert = s.Cert()
	}
	st.Boot = s.Boot
	return st
}

func (s *Server) statusJSON(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(s.Status())
}
