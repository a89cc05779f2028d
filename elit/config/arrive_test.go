package config

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"elit.local/elit/certs"
	"elit.local/elit/decide"
	"elit.local/elit/deliver"
	"elit.local/elit/dns"
	"elit.local/elit/mailauth"
	"elit.local/elit/policy"
	"elit.local/elit/queue"
	"elit.local/elit/receive"
	"elit.local/elit/tlspolicy"
	"elit.local/elit/tlsrpt"
	"elit.local/elit/userdb"
	"elit.local/oneffs"
)

// made is everything a configuration produces.
type made struct {
	cfg       *Config
	receive   receive.Config
	deliver   deliver.Config
	certs     certs.Config
	tlsrpt    *tlsrpt.Sender
	listeners map[receive.Mode]string
	db        *userdb.DB
	dbErr     error
	notified  bool // the receiver tells the deliverer of a message queued
}

func produce(t *testing.T, c *Config) *made {
	t.Helper()
	m := &made{cfg: c, listeners: map[receive.Mode]string{}}
	p := Parts{Log: slog.New(slog.DiscardHandler), Key: make([]byte, 32), Postmaster: "fallback@example.org",
		Notify: func(*queue.Message) { m.notified = true }, Keys: &mailauth.Keys{}}
	m.receive = c.ReceiveConfig(p)
	m.deliver = c.DeliverConfig(p)
	m.certs = c.CertsConfig()
	m.tlsrpt = c.TLSReportSender(p)
	for _, l := range c.Listeners() {
		m.listeners[l.Mode] = l.Addr
	}
	loader := c.Loader(p.Log)
	m.dbErr = loader.Load()
	m.db = loader.DB()
	m.receive.Deliver(&queue.Message{ID: "x"})
	return m
}

// TestEveryFlagArrives sets each flag of elit serve, one at a time, to a
// value other than its default, and finds the value where the flag says
// it goes: in the receive or deliver configuration, the certificates, the
// listeners, the user database loaded, or the setting the server reads. A
// flag missing from the table fails: say where a new one goes.
func TestEveryFlagArrives(t *testing.T) {
	dir := t.TempDir()
	jsonDB := writeFile(t, "users.json", `[{"name": "json", "mailboxes": ["a@example.com"]}]`)
	otherDB := writeFile(t, "other.json", `[{"name": "other", "mailboxes": ["a@example.com"]}]`)
	img, img4k := filepath.Join(dir, "users.img"), filepath.Join(dir, "users4k.img")
	if err := oneffs.Create(img, []byte(`[{"name": "image", "mailboxes": ["b@example.com"]}]`)); err != nil {
		t.Fatal(err)
	}
	if err := oneffs.Create(img4k, []byte(`[{"name": "image4k", "mailboxes": ["b@example.com"]}]`), oneffs.WithSectorSize(4096)); err != nil {
		t.Fatal(err)
	}
	file := writeFile(t, "config.json", `{"domains": ["other.example"], "transports": {"relay": {"type": "submission", "host": "relay.example:587", "user": "u", "password": "p"}}, "routes": [{"user": "din", "transport": "relay"}]}`)
	user := func(m *made) any {
		if m.dbErr != nil {
			return m.dbErr.Error()
		}
		return m.db.Users()[0].Address
	}
	rcv := func(f func(r receive.Config) any) func(*made) any { return func(m *made) any { return f(m.receive) } }
	dlv := func(f func(d deliver.Config) any) func(*made) any { return func(m *made) any { return f(m.deliver) } }
	dests := map[string]struct {
		value string   // "" one derived from the default
		also  []string // other flags this one needs
		got   func(*made) any
		want  any // nil: the value set
	}{
		"config":    {value: file, got: func(m *made) any { return []any{hosts(m.deliver.Transports), m.deliver.Routes, m.db.Domains()} }, want: []any{[]string{"relay relay.example:587"}, []deliver.Route{{User: "din", Transport: "relay"}}, []string{"example.org", "other.example"}}},
		"domain":    {value: "example.net", got: func(m *made) any { return []string{step[*policy.Route](m).SRS.Domain, m.db.Users()[0].Address} }, want: []string{"example.net", "json@example.net"}},
		"hostname":  {value: "mx.example.org", got: func(m *made) any { return []string{m.receive.Hostname, m.deliver.Hostname, m.certs.Hostname} }, want: []string{"mx.example.org", "mx.example.org", "mx.example.org"}},
		"log-level": {value: "debug", got: func(m *made) any { return m.cfg.LogLevel }},
		"state": {value: filepath.Join(dir, "state2"), got: func(m *made) any {
			return []string{filepath.Dir(m.certs.SelfSignedDir), filepath.Dir(m.certs.ACME.CacheDir)}
		}, want: []string{filepath.Join(dir, "state2"), filepath.Join(dir, "state2")}},
		"db":                       {value: img, got: user, want: "image@example.org"},
		"db-json":                  {value: otherDB, got: user, want: "other@example.org"},
		"db-sector-size":           {value: "4096", also: []string{"-db", img4k, "-db-json", ""}, got: user, want: "image4k@example.org"},
		"db-check-interval":        {got: func(m *made) any { return m.cfg.Database.CheckInterval }},
		"mx-addr":                  {value: "127.0.0.1:2525", got: func(m *made) any { return m.listeners[receive.MX] }},
		"submission-addr":          {value: "127.0.0.1:5870", got: func(m *made) any { return m.listeners[receive.Submission] }},
		"submissions-addr":         {value: "127.0.0.1:4650", got: func(m *made) any { return m.listeners[receive.Submissions] }},
		"postmaster":               {value: "pm@example.org", got: func(m *made) any { return step[*policy.Route](m).Postmaster }},
		"srs":                      {got: func(m *made) any { return step[*policy.Route](m).SRS != nil }},
		"max-size":                 {got: rcv(func(r receive.Config) any { return r.MaxSize })},
		"max-recipients":           {got: rcv(func(r receive.Config) any { return r.MaxRecipients })},
		"max-line-length":          {got: rcv(func(r receive.Config) any { return r.MaxLineLength })},
		"max-conns":                {got: rcv(func(r receive.Config) any { return r.MaxConns })},
		"max-conns-per-ip":         {got: rcv(func(r receive.Config) any { return r.MaxConnsPerIP })},
		"read-timeout":             {got: rcv(func(r receive.Config) any { return r.ReadTimeout })},
		"write-timeout":            {got: rcv(func(r receive.Config) any { return r.WriteTimeout })},
		"max-session-time":         {got: rcv(func(r receive.Config) any { return r.MaxSessionTime })},
		"max-auth-failures":        {got: rcv(func(r receive.Config) any { return r.MaxAuthFailures })},
		"max-auth-failures-per-ip": {got: rcv(func(r receive.Config) any { return r.MaxAuthFailIP })},
		"auth-failure-window":      {got: rcv(func(r receive.Config) any { return r.AuthFailWindow })},
		"auth-failure-delay":       {got: rcv(func(r receive.Config) any { return r.AuthFailureDelay })},
		"max-hops":                 {got: func(m *made) any { return step[*policy.Hops](m).Max }},
		"soft-error-limit":         {got: rcv(func(r receive.Config) any { return r.SoftErrorLimit })},
		"hard-error-limit":         {got: rcv(func(r receive.Config) any { return r.HardErrorLimit })},
		"error-sleep":              {got: rcv(func(r receive.Config) any { return r.ErrorSleep })},
		"max-errors-per-ip":        {got: rcv(func(r receive.Config) any { return r.MaxClientErrors })},
		"error-window":             {got: rcv(func(r receive.Config) any { return r.ClientErrorWindow })},
		"deliver":                  {got: func(m *made) any { return m.notified }},
		"mail-checks":              {got: func(m *made) any { return step[*mailauth.Step](m).Check }},
		"dmarc-reject":             {got: func(m *made) any { return step[*mailauth.Step](m).Reject }},
		"arc":                      {got: func(m *made) any { return step[*mailauth.Step](m).Seal }},
		"dkim":                     {got: func(m *made) any { return step[*mailauth.Step](m).Sign }},
		"dkim-ed25519":             {got: func(m *made) any { return m.cfg.MailAuth.Ed25519 }},
		"dane":                     {got: func(m *made) any { return m.deliver.TLSPolicy.(*tlspolicy.Chain).DANE != nil }},
		"resolver-trust-ad":        {got: dlv(func(d deliver.Config) any { return d.Resolver.(*dns.Client).TrustAD })},
		"mta-sts":                  {got: func(m *made) any { return m.cfg.TLSPolicy.MTASTS }},
		"mta-sts-publish":          {value: "enforce", got: func(m *made) any { return m.cfg.TLSPolicy.Publish }},
		"mta-sts-max-age":          {value: "24h", got: func(m *made) any { return m.cfg.TLSPolicy.PublishMaxAge }},
		"authserv-id":              {value: "checker.example.org", got: func(m *made) any { return step[*mailauth.Step](m).AuthServID }},
		"resolver":                 {value: "127.0.0.1:53", got: dlv(func(d deliver.Config) any { return d.Resolver.(*dns.Client).Server })},
		"smarthost":                {value: "relay.example:25", got: dlv(func(d deliver.Config) any { return d.Smarthost })},
		"delivery-port":            {value: "2525", got: dlv(func(d deliver.Config) any { return d.Port })},
		"retry-first":              {got: dlv(func(d deliver.Config) any { return d.FirstRetry })},
		"retry-max":                {got: dlv(func(d deliver.Config) any { return d.MaxRetry })},
		"queue-lifetime":           {got: dlv(func(d deliver.Config) any { return d.Lifetime })},
		"delay-warning":            {got: dlv(func(d deliver.Config) any { return d.DelayWarning })},
		"max-deliveries":           {got: dlv(func(d deliver.Config) any { return d.MaxParallel })},
		"max-per-destination":      {got: dlv(func(d deliver.Config) any { return d.MaxPerDest })},
		"tls-cert":                 {value: "cert.pem", got: func(m *made) any { return m.certs.CertFile }},
		"tls-key":                  {value: "key.pem", got: func(m *made) any { return m.certs.KeyFile }},
		"acme":                     {got: func(m *made) any { return m.certs.ACME.Enabled }},
		"acme-directory":           {value: "https://127.0.0.1:14000/dir", got: func(m *made) any { return m.certs.ACME.Directory }},
		"acme-email":               {value: "pm@example.org", got: func(m *made) any { return m.certs.ACME.Email }},
		"acme-ca-file":             {value: "ca.pem", got: func(m *made) any { return m.certs.ACME.CAFile }},
		// The server listens for the challenges and serves HTTP.
		"acme-tls-addr":      {value: "127.0.0.1:4430", got: func(m *made) any { return m.cfg.TLS.ACME.TLSAddr }},
		"acme-http-addr":     {value: "127.0.0.1:8080", got: func(m *made) any { return m.cfg.TLS.ACME.HTTPAddr }},
		"metrics-addr":       {value: "127.0.0.1:9100", got: func(m *made) any { return m.cfg.HTTP.MetricsAddr }},
		"http-addr":          {value: "127.0.0.1:8025", got: func(m *made) any { return m.cfg.HTTP.StatusAddr }},
		"http-password-file": {value: "pw.txt", got: func(m *made) any { return m.cfg.HTTP.PasswordFiles() }, want: []string{"pw.txt"}},
		"http-tls":           {got: func(m *made) any { return m.cfg.HTTP.TLS }},
		"http-plain-db-push": {got: func(m *made) any { return m.cfg.HTTP.PlainDBPush }},
		"requiretls":         {got: rcv(func(r receive.Config) any { return !r.NoREQUIRETLS })},
		"tlsrpt":             {got: func(m *made) any { return step[*tlsrpt.Step](m) != nil && m.tlsrpt != nil }},
		"tlsrpt-from":        {value: "reports@example.org", got: func(m *made) any { return m.tlsrpt.From }},
		"tlsrpt-address":     {value: "tls-reports@example.org", got: func(m *made) any { return step[*tlsrpt.Step](m).Address }},
	}
	base := []string{"-domain", "example.org", "-db-json", jsonDB, "-state", filepath.Join(dir, "state")}
	Default().FlagSet("", io.Discard).VisitAll(func(f *flag.Flag) {
		t.Run(f.Name, func(t *testing.T) {
			d, ok := dests[f.Name]
			if !ok {
				t.Fatalf("-%s: no destination in this test; say where it goes", f.Name)
			}
			c := Default()
			fs := c.FlagSet("", io.Discard)
			if err := fs.Parse(append(base, d.also...)); err != nil {
				t.Fatal(err)
			}
			before := d.got(produce(t, c))
			value := d.value
			if value == "" {
				value = otherThan(t, f)
			}
			if err := fs.Set(f.Name, value); err != nil {
				t.Fatal(err)
			}
			if err := c.ApplyFile(fs); err != nil {
				t.Fatal(err)
			}
			want := d.want
			if want == nil {
				want = fs.Lookup(f.Name).Value.(flag.Getter).Get()
			}
			got := d.got(produce(t, c))
			if fmt.Sprint(got) != fmt.Sprint(want) || reflect.DeepEqual(got, before) {
				t.Errorf("-%s %s: got %v (before: %v), want %v", f.Name, value, got, before, want)
			}
		})
	})
	for name := range dests {
		if Default().FlagSet("", io.Discard).Lookup(name) == nil {
			t.Errorf("-%s is in the table but is no flag", name)
		}
	}
}

// otherThan is a value of f's type other than its default.
func otherThan(t *testing.T, f *flag.Flag) string {
	switch v := f.Value.(flag.Getter).Get().(type) {
	case bool:
		return fmt.Sprint(!v)
	case int:
		return fmt.Sprint(2*v + 1001)
	case int64:
		return fmt.Sprint(2*v + 1001)
	case time.Duration:
		return (2*v + 1500*time.Millisecond).String()
	}
	t.Fatalf("-%s: give a value for a %T", f.Name, f.Value.(flag.Getter).Get())
	return ""
}

// hosts lists the transports as "name host".
func hosts(ts map[string]*deliver.Transport) []string {
	var s []string
	for name, t := range ts {
		s = append(s, name+" "+t.Host)
	}
	return s
}

// step is the decide step of type T that the receive configuration has.
func step[T decide.Step](m *made) T {
	for _, s := range m.receive.Steps {
		if t, ok := s.(T); ok {
			return t
		}
	}
	var zero T
	return zero
}
