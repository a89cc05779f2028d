package main

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"regexp"
	"strings"
	"time"

	"elit.local/elit/queue"
	"elit.local/elit/userdb"
)

// version is set at build time (-ldflags=-X main.version=...).
var version = "dev"

// statusServer is the appliance's own small web page: what runs, the queue,
// the last database load and the DNS records to publish; and PUT /db, which
// replaces the user database (elit-image db push). It answers only clients
// on private, loopback or link-local addresses, with HTTP basic auth
// (user "gokrazy", the appliance's password), like gokrazy's own web UI.
type statusServer struct {
	c        *serveConfig
	q        *queue.Store
	loader   *userdb.Loader
	certs    *certSource
	boot     bootInfo
	password string
	started  time.Time
	log      *slog.Logger
}

// defaultPasswordFiles are where gokrazy keeps its web password: /perm
// first, then the one built into the root file system.
var defaultPasswordFiles = []string{"/perm/gokr-pw.txt", "/etc/gokr-pw.txt"}

func readPasswordFile(files []string) (string, error) {
	for _, f := range files {
		b, err := os.ReadFile(f)
		if pw := strings.TrimSpace(string(b)); err == nil && pw != "" {
			return pw, nil
		}
	}
	return "", fmt.Errorf("no password in %s", strings.Join(files, " or "))
}

func (s *statusServer) serve(ctx context.Context, addr string) error {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.page)
	mux.HandleFunc("GET /status.json", s.statusJSON)
	mux.HandleFunc("PUT /db", s.putDB)
	l, err := listenHTTP(ctx, addr, &http.Server{Handler: s.guard(mux), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute})
	if err != nil {
		return err
	}
	s.log.Info("status page listening", "addr", l.String())
	return nil
}

// guard lets through private-network clients with the right password.
func (s *statusServer) guard(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ap, err := netip.ParseAddrPort(r.RemoteAddr)
		ip := ap.Addr().Unmap()
		if err != nil || !(ip.IsPrivate() || ip.IsLoopback() || ip.IsLinkLocalUnicast()) {
			http.Error(w, "only from a private network", http.StatusForbidden)
			return
		}
		user, pw, ok := r.BasicAuth()
		if !ok || subtle.ConstantTimeCompare([]byte(user), []byte("gokrazy"))&
			subtle.ConstantTimeCompare([]byte(pw), []byte(s.password)) != 1 {
			w.Header().Set("WWW-Authenticate", `Basic realm="elit"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// status is what the page and status.json show.
type status struct {
	Version   string     `json:"version"`
	Domain    string     `json:"domain"`
	Hostname  string     `json:"hostname"`
	Started   time.Time  `json:"started"`
	Queue     queueStats `json:"queue"`
	Database  dbStatus   `json:"database"`
	DNSRecord []string   `json:"dns_records"`
	Cert      certInfo   `json:"certificate"`
	// Boot is what the kernel command line says about the root file
	// system (on the appliance; zero elsewhere).
	Boot bootInfo `json:"boot"`
}

// certInfo describes the TLS certificate served.
type certInfo struct {
	Source   string    `json:"source"` // acme, file or self-signed
	Names    []string  `json:"names"`
	Issuer   string    `json:"issuer"`
	NotAfter time.Time `json:"not_after"`
}

// bootInfo is the gokrazy root partition the boot partition names (2 or 3),
// and whether this boot is a trial of the other one
// (gokrazy.try_boot_inactive=1, see elit-image update).
type bootInfo struct {
	RootPartition int  `json:"root_partition,omitempty"`
	Trial         bool `json:"trial,omitempty"`
}

// trialMarker on the kernel command line is a trial boot of the inactive
// root (gokrazy's init clears it for the next boot).
const trialMarker = "gokrazy.try_boot_inactive=1"

var partnroffRE = regexp.MustCompile(`\broot=PARTUUID=[0-9a-fA-F-]+/PARTNROFF=([12])\b`)

// readBootInfo reads a kernel command line (/proc/cmdline), which stays the
// same for the whole boot: zero when there is none.
func readBootInfo(path string) bootInfo {
	cmdline, err := os.ReadFile(path)
	if err != nil {
		return bootInfo{}
	}
	return parseCmdline(string(cmdline))
}

func parseCmdline(cmdline string) bootInfo {
	var b bootInfo
	if m := partnroffRE.FindStringSubmatch(cmdline); m != nil {
		b.RootPartition = 1 + int(m[1][0]-'0')
	}
	b.Trial = strings.Contains(cmdline, trialMarker)
	return b
}

type queueStats struct {
	Messages int       `json:"messages"`
	Pending  int       `json:"pending_recipients"`
	Held     int       `json:"held_recipients"`
	Oldest   time.Time `json:"oldest,omitzero"`
	Error    string    `json:"error,omitempty"`
}

type dbStatus struct {
	Source    string    `json:"source"`
	Addresses int       `json:"addresses"`
	Loaded    time.Time `json:"loaded"`
	FromCache bool      `json:"from_cache"`
	LastTry   time.Time `json:"last_try"`
	Error     string    `json:"error,omitempty"`
}

func (s *statusServer) status() status {
	st := status{Version: version, Domain: s.c.domain, Hostname: s.c.hostname, Started: s.started}
	msgs, err := s.q.List()
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
	info := s.loader.Info()
	st.Database = dbStatus{Source: s.c.dbSource(), Loaded: info.Loaded, FromCache: info.FromCache, LastTry: info.Time}
	if db := s.loader.DB(); db != nil {
		st.Database.Addresses = db.Len()
	}
	if info.Err != nil {
		st.Database.Error = info.Err.Error()
	}
	st.DNSRecord = dnsRecords(s.c.domain, s.c.hostname)
	if s.certs != nil {
		st.Cert = s.certs.info(s.c.tlsCert != "")
	}
	st.Boot = s.boot
	return st
}

// dnsRecords are the records a domain served by this appliance publishes:
// MX (RFC 5321 §5.1), SPF (RFC 7208), DMARC (RFC 7489 §6.1) and the
// submission SRV records (RFC 6186 §3.1, RFC 8314 §5.1). The host name's A
// and AAAA records hold the appliance's public addresses, which it cannot
// know behind NAT.
func dnsRecords(domain, hostname string) []string {
	return []string{
		fmt.Sprintf("%s. MX 10 %s.", domain, hostname),
		fmt.Sprintf("%s. A/AAAA <the public address of this appliance>", hostname),
		fmt.Sprintf(`%s. TXT "v=spf1 mx -all"`, domain),
		fmt.Sprintf(`_dmarc.%s. TXT "v=DMARC1; p=none; rua=mailto:postmaster@%s"`, domain, domain),
		fmt.Sprintf("_submissions._tcp.%s. SRV 0 1 465 %s.", domain, hostname),
		fmt.Sprintf("_submission._tcp.%s. SRV 0 1 587 %s.", domain, hostname),
	}
}

func (s *statusServer) statusJSON(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(s.status())
}

var pageTemplate = template.Must(template.New("page").Parse(`<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Elit {{.Hostname}}</title></head>
<body>
<h1>Elit on {{.Hostname}}</h1>
<p>Version {{.Version}}, mail domain {{.Domain}}, running since {{.Started.Format "2006-01-02 15:04:05 MST"}}.</p>
<h2>Queue</h2>
<p>{{.Queue.Messages}} messages: {{.Queue.Pending}} recipients pending, {{.Queue.Held}} held{{if not .Queue.Oldest.IsZero}}; oldest received {{.Queue.Oldest.Format "2006-01-02 15:04:05 MST"}}{{end}}.{{with .Queue.Error}} Error: {{.}}{{end}}</p>
<h2>User database</h2>
<p>{{.Database.Addresses}} addresses from {{.Database.Source}}{{if .Database.FromCache}} (the cached copy){{end}}, loaded {{.Database.Loaded.Format "2006-01-02 15:04:05 MST"}}; last checked {{.Database.LastTry.Format "2006-01-02 15:04:05 MST"}}.</p>
{{with .Database.Error}}<p><strong>The last load failed:</strong> {{.}}</p>{{end}}
<h2>TLS certificate</h2>
<p>{{.Cert.Source}}: {{range .Cert.Names}}{{.}} {{end}}issued by {{.Cert.Issuer}}, valid until {{.Cert.NotAfter.Format "2006-01-02 15:04 MST"}}.</p>
<h2>DNS records to publish</h2>
<pre>{{range .DNSRecord}}{{.}}
{{end}}</pre>
</body></html>
`))

func (s *statusServer) page(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if err := pageTemplate.Execute(w, s.status()); err != nil {
		s.log.Error("status page", "err", err)
	}
}

// maxDBPush bounds a pushed database (the OneFFS partition is 16 MiB).
const maxDBPush = 8 << 20

// putDB replaces the user database with the request body (JSON): 200 and
// the number of addresses, or 422 with every problem, one per line.
func (s *statusServer) putDB(w http.ResponseWriter, r *http.Request) {
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxDBPush))
	if err != nil {
		http.Error(w, "reading the database: "+err.Error(), http.StatusRequestEntityTooLarge)
		return
	}
	db, err := s.loader.Replace(data)
	var perr *userdb.Error
	switch {
	case errors.As(err, &perr):
		w.WriteHeader(http.StatusUnprocessableEntity)
		fmt.Fprintln(w, "database refused; the one in use stays:")
		for _, p := range perr.Problems {
			fmt.Fprintln(w, p.String())
		}
		s.log.Warn("pushed user database refused", "err", err)
		return
	case err != nil:
		http.Error(w, err.Error(), http.StatusInternalServerError)
		s.log.Error("pushed user database not stored", "err", err)
		return
	}
	for _, p := range db.Warnings {
		fmt.Fprintln(w, p.String())
	}
	fmt.Fprintf(w, "database stored and loaded: %d addresses\n", db.Len())
	s.log.Info("user database pushed", "addresses", db.Len(), "from", r.RemoteAddr)
}
