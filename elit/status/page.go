package status

import (
	"errors"
	"fmt"
	"html/template"
	"io"
	"net/http"

	"elit.local/elit/userdb"
)

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
<h2>DKIM keys</h2>
{{if .DKIM}}<table>{{range .DKIM}}<tr><td>{{.Domain}}</td><td>{{.Selector}}</td><td>{{.Algorithm}}</td><td>made {{.Created.Format "2006-01-02"}}</td></tr>
{{end}}</table>{{else}}<p>None yet: a key is made at the first start.</p>{{end}}
<h2>TLS reports received</h2>
{{if .TLSReports}}<table><tr><th>received</th><th>from</th><th>domains</th><th>period</th><th>sessions ok</th><th>failed</th></tr>
{{range .TLSReports}}<tr><td>{{.Received.Format "2006-01-02 15:04"}}</td><td>{{.Organization}}</td><td>{{range .Domains}}{{.}} {{end}}</td><td>{{.Start.Format "2006-01-02"}} to {{.End.Format "2006-01-02"}}</td><td>{{.Successful}}</td><td>{{.Failed}}{{range $k, $v := .Failures}} {{$k}}: {{$v}}{{end}}</td></tr>
{{end}}</table>{{else}}<p>None (they come to the address of our TLSRPT record).</p>{{end}}
<h2>Destinations</h2>
{{if .Destinations}}<table><tr><th>domain</th><th>last server</th><th>STARTTLS</th><th>REQUIRETLS</th><th>downgrades</th><th>updated</th></tr>
{{range .Destinations}}<tr><td>{{.Domain}}</td><td>{{.Host}}</td><td>{{if .STARTTLS}}yes{{else}}no{{end}}</td><td>{{if .REQUIRETLS}}yes{{else}}no{{end}}</td><td>{{.Downgrades}}</td><td>{{.Updated.Format "2006-01-02 15:04"}}</td></tr>
{{end}}</table>{{else}}<p>No delivery yet.</p>{{end}}
<h2>DNS records to publish</h2>
<pre>{{range .DNSRecord}}{{.}}
{{end}}</pre>
</body></html>
`))

func (s *Server) page(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if err := pageTemplate.Execute(w, s.Status()); err != nil {
		s.Log.Error("status page", "err", err)
	}
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
