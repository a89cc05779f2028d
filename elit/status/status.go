// Package status is the appliance's own small web page: what runs, the
// queue, the last database load, the certificate and the DNS records to
// publish (GET /, GET /status.json); and PUT /db, which replaces the user
// database (elit-image db push). It answers only clients on private,
// loopback or link-local addresses, with HTTP basic auth (user "gokrazy",
// the appliance's password), like gokrazy's own web UI; elit serves it
// over HTTPS, and PUT /db, which carries the users' secrets, only there
// unless PlainDBPush.
package status

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"elit.local/elit/certs"
	"elit.local/elit/deliver"
	"elit.local/elit/internal/failcount"
	"elit.local/elit/lists"
	"elit.local/elit/mailauth"
	"elit.local/elit/maillog"
	"elit.local/elit/metrics"
	"elit.local/elit/queue"
	"elit.local/elit/records"
	"elit.local/elit/tlsrpt"
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
	// Records are the DNS records to publish (config.DNSRecords).
	Records func(keys []mailauth.Key, tlsa string) []records.Record
	// TLSReports are the TLS reports others sent us (RFC 8460), newest
	// first, and Destinations what the destination domains' servers
	// offered (STARTTLS, REQUIRETLS); nil: not shown.
	TLSReports   func() []tlsrpt.ReportSummary
	Destinations func() []deliver.DestinationTLS
	Boot         Boot
	Password     string
	// PlainDBPush accepts PUT /db over plain HTTP.
	PlainDBPush bool
	Started     time.Time
	Log         *slog.Logger

	// Control carries out an operator command on a queued message: the
	// code elit queue reaches through the control socket
	// (deliver.Deliverer.Do); nil: the page has no queue actions.
	Control func(ctx context.Context, cmd, id string) (string, error)
	// Resolver answers the DNS check of the records to publish; nil: no
	// check.
	Resolver Resolver
	// ListBounces returns the bounces counted for list members by list
	// address and member (lists.Bounces.Read); nil: not shown.
	ListBounces func() map[string]map[string]*lists.Member
	// Traffic is the per-hour counts of the chart, MailLog the recent
	// mail log; nil: not shown.
	Traffic *metrics.Hourly
	MailLog *maillog.Ring
	// Now is the clock (nil: time.Now).
	Now func() time.Time

	once    sync.Once
	csrfKey []byte
	logins  *failcount.Counter // failed logins, per client and in all
	dns     dnsCache
}

func (s *Server) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
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

// Handler is the status page (its style sheet and script under
// /static/, its actions POST /queue and POST /dns), status.json, PUT /db
// and POST /sync, behind the guard.
func (s *Server) Handler() http.Handler {
	s.setup()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.page)
	mux.Handle("GET /static/", staticFiles())
	mux.HandleFunc("GET /traffic.svg", s.trafficSVG)
	mux.HandleFunc("POST /queue", s.queueAction)
	mux.HandleFunc("POST /dns", s.dnsAgain)
	mux.HandleFunc("GET /status.json", s.statusJSON)
	mux.HandleFunc("PUT /db", s.putDB)
	mux.HandleFunc("POST /sync", s.sync)
	return securityHeaders(s.guard(mux))
}

// Sync flushes the file systems and block devices (nil: syscall.Sync).
var Sync = syscall.Sync

// sync puts every write of the system on stable storage (sync(2)):
// gokrazy writes the boot partition's command line without syncing, so
// elit-image update calls this once it has made a trial boot permanent
// (POST /update/switch); without it a power cut in the next half minute
// could lose the switch.
func (s *Server) sync(w http.ResponseWriter, r *http.Request) {
	Sync()
	io.WriteString(w, "synced\n")
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
	// TLSReports are the last TLS reports received (at most
	// maxShown), Destinations the domains we deliver to.
	TLSReports   []tlsrpt.ReportSummary   `json:"tls_reports"`
	Destinations []deliver.DestinationTLS `json:"destinations"`
	// Boot is what the kernel command line says about the root file
	// system (on the appliance; zero elsewhere).
	Boot Boot `json:"boot"`
}

// maxShown bounds the TLS reports and destinations the status shows.
const maxShown = 100

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
	msgs, err := s.Queue.List()
	return s.status(msgs, err)
}

// status is the state shown now with the queue listed (and err, why some
// of its messages could not be read).
func (s *Server) status(msgs []*queue.Message, err error) Status {
	st := Status{Version: s.Version, Domain: s.Domain, Hostname: s.Hostname, Started: s.Started}
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
	keys := s.domainKeys()
	if s.Keys != nil {
		for _, k := range s.Keys.All() {
			st.DKIM = append(st.DKIM, DKIMKey{k.Domain, k.Selector, k.Algorithm, k.RecordName(), k.Record, k.Created})
		}
	}
	if s.Cert != nil {
		st.Cert = s.Cert()
	}
	if s.Records != nil {
		for _, r := range s.Records(keys, st.Cert.TLSA) {
			st.DNSRecord = append(st.DNSRecord, r.String())
		}
	}
	if s.TLSReports != nil {
		st.TLSReports = s.TLSReports()
		st.TLSReports = st.TLSReports[:min(len(st.TLSReports), maxShown)]
	}
	if s.Destinations != nil {
		st.Destinations = s.Destinations()
		st.Destinations = st.Destinations[:min(len(st.Destinations), maxShown)]
	}
	st.Boot = s.Boot
	return st
}

// domainKeys are the DKIM keys of our domain.
func (s *Server) domainKeys() []mailauth.Key {
	if s.Keys == nil {
		return nil
	}
	return s.Keys.For(s.Domain)
}

func (s *Server) statusJSON(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(s.Status())
}
