package status

import (
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"strings"
	"time"

	"elit.local/elit/lists"
	"elit.local/elit/userdb"
)

//go:embed page.html
var pageHTML string

//go:embed static
var static embed.FS

var pageTemplate = template.Must(template.New("page").Funcs(template.FuncMap{
	"date": func(t time.Time) string { return t.Format("2006-01-02 15:04 MST") },
	"join": strings.Join,
	"add": func(n ...int) int {
		sum := 0
		for _, x := range n {
			sum += x
		}
		return sum
	},
}).Parse(pageHTML))

// certWarning is how long before its expiry the page warns of the TLS
// certificate.
const certWarning = 14 * 24 * time.Hour

// maxUsers bounds the users the page lists.
const maxUsers = 500

// pageData is what the page shows.
type pageData struct {
	Status
	Now   time.Time
	CSRF  string
	Table QueueTable
	// DNS is the check of the records to publish; DNSBad counts those
	// not right.
	DNS    []DNSCheck
	DNSBad int
	// CertLeft is how long the certificate stays valid; CertWarn is set
	// from certWarning before its expiry.
	CertLeft  string
	CertWarn  bool
	Users     []UserRow
	MoreUsers int
	// Traffic is the chart and the mail log; nil: not shown.
	Traffic *trafficView
}

// UserRow is one user or list of the database: never a secret, only
// which login mechanisms its secrets allow.
type UserRow struct {
	Name, Address string
	Mailboxes     []MailboxRow
	Mechanisms    []string
}

// MailboxRow is where a user's mail goes and, for a list's member, the
// bounces counted for it.
type MailboxRow struct {
	Address string
	Bounces int
	Last    string // the last bounce's reason
}

func (s *Server) page(w http.ResponseWriter, r *http.Request) {
	now := s.now()
	msgs, err := s.Queue.List()
	d := pageData{Status: s.status(msgs, err), Now: now}
	user, _, _ := r.BasicAuth()
	d.CSRF = s.csrfToken(user)
	d.Table = s.queueTable(msgs, parseQueueView(r.URL.Query()), now)
	d.Table.Result = actionResult(r.URL.Query())
	if err != nil {
		d.Table.Error = err.Error()
	}
	if s.Records != nil {
		d.DNS = s.checkDNS(r.Context(), s.Records(s.domainKeys(), d.Cert.TLSA))
		for _, c := range d.DNS {
			if c.State != Right {
				d.DNSBad++
			}
		}
	}
	if !d.Cert.NotAfter.IsZero() {
		left := d.Cert.NotAfter.Sub(now)
		d.CertLeft, d.CertWarn = age(left), left < certWarning
		if left <= 0 {
			d.CertLeft = "expired " + age(-left) + " ago"
		}
	}
	d.Users, d.MoreUsers = s.users()
	d.Traffic = s.traffic(strings.TrimSpace(r.URL.Query().Get("log")))
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if err := pageTemplate.Execute(w, d); err != nil {
		s.Log.Error("status page", "err", err)
	}
}

// users lists the users and lists of the database in use (at most
// maxUsers), and how many more there are.
func (s *Server) users() ([]UserRow, int) {
	db := s.Loader.DB()
	if db == nil {
		return nil, 0
	}
	var bounces map[string]map[string]*lists.Member
	if s.ListBounces != nil {
		bounces = s.ListBounces()
	}
	all := db.Users()
	var rows []UserRow
	for _, u := range all[:min(len(all), maxUsers)] {
		row := UserRow{Name: u.Name, Address: u.Address, Mechanisms: u.Mechanisms()}
		members := bounces[strings.ToLower(u.Address)] // lists key by the list's address
		for _, mb := range u.Mailboxes {
			m := MailboxRow{Address: mb}
			if b := members[strings.ToLower(mb)]; b != nil {
				m.Bounces, m.Last = b.Bounces, b.LastReason
			}
			row.Mailboxes = append(row.Mailboxes, m)
		}
		rows = append(rows, row)
	}
	return rows, len(all) - len(rows)
}

// staticFiles serves the page's style sheet and script from the binary.
func staticFiles() http.Handler {
	return http.FileServerFS(static)
}

// dnsAgain forgets the DNS check, so that the page asks DNS again.
func (s *Server) dnsAgain(w http.ResponseWriter, r *http.Request) {
	if !s.checkCSRF(r) {
		http.Error(w, "refused: the form's token is missing or stale; reload the page", http.StatusForbidden)
		return
	}
	s.forgetDNS()
	http.Redirect(w, r, "/#dns", http.StatusSeeOther)
}

// maxDBPush bounds a pushed database (the OneFFS partition is 16 MiB).
const maxDBPush = 8 << 20

// putDB replaces the user database with the request body (JSON): 200 and
// the number of addresses, or 422 with every problem, one per line; 403
// over plain HTTP unless PlainDBPush.
func (s *Server) putDB(w http.ResponseWriter, r *http.Request) {
	if r.TLS == nil && !s.PlainDBPush {
		http.Error(w, "PUT /db only over HTTPS (elit serve -http-plain-db-push allows plain HTTP)", http.StatusForbidden)
		return
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxDBPush))
	if err != nil {
		http.Error(w, "reading the database: "+err.Error(), http.StatusRequestEntityTooLarge)
		return
	}
	db, err := s.Loader.Replace(data)
	var perr *userdb.Error
	switch {
	case errors.As(err, &perr):
		w.WriteHeader(http.StatusUnprocessableEntity)
		fmt.Fprintln(w, "database refused; the one in use stays:")
		for _, p := range perr.Problems {
			fmt.Fprintln(w, p.String())
		}
		s.Log.Warn("pushed user database refused", "err", err)
		return
	case err != nil:
		http.Error(w, err.Error(), http.StatusInternalServerError)
		s.Log.Error("pushed user database not stored", "err", err)
		return
	}
	for _, p := range db.Warnings {
		fmt.Fprintln(w, p.String())
	}
	fmt.Fprintf(w, "database stored and loaded: %d addresses\n", db.Len())
	s.Log.Info("user database pushed", "addresses", db.Len(), "from", r.RemoteAddr)
}
