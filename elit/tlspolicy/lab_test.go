package tlspolicy_test

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"elit.local/elit/deliver"
	"elit.local/elit/dns"
	"elit.local/elit/internal/dnsseclab"
	"elit.local/elit/internal/smtptest"
	"elit.local/elit/internal/testlib"
	"elit.local/elit/mtasts"
	"elit.local/elit/queue"
	"elit.local/elit/tlspolicy"
	"elit.local/internal/freeport"
)

// reports records the TLS outcomes the deliverer reports.
type reports struct {
	mu  sync.Mutex
	all []deliver.TLSOutcome
}

func (r *reports) ReportTLS(o deliver.TLSOutcome) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.all = append(r.all, o)
}

func (r *reports) of(domain string) []deliver.TLSOutcome {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []deliver.TLSOutcome
	for _, o := range r.all {
		if o.Domain == domain {
			out = append(out, o)
		}
	}
	return out
}

func tlsa311(cert tls.Certificate) string {
	sum := sha256.Sum256(cert.Leaf.RawSubjectPublicKeyInfo)
	return "3 1 1 " + hex.EncodeToString(sum[:])
}

// TestLab is issue 13's proof on loopback: a DNSSEC-signed zone served
// and validated (unbound), an MTA-STS policy host, and SMTP servers with
// good and bad certificates, behind the deliverer with the policy chain.
func TestLab(t *testing.T) {
	port := freeport.Get(t)
	// The peers, one a loopback address, all on one port (the deliverer's).
	good, goodPool := testlib.Certificate("mx.good.dane.test", "mx.enforce.sts.test", "mx.other.sts.test")
	other, _ := testlib.Certificate("mx.bad.dane.test")
	untrusted, _ := testlib.Certificate("mx.badcert.sts.test", "mx.testing.sts.test")
	peers := map[string]*smtptest.Peer{}
	for host, c := range map[string]struct {
		ip   string
		cert tls.Certificate
	}{
		"mx.good.dane.test":   {"127.0.0.11", good},
		"mx.bad.dane.test":    {"127.0.0.12", other},
		"mx.enforce.sts.test": {"127.0.0.13", good},
		"mx.badcert.sts.test": {"127.0.0.14", untrusted},
		"mx.testing.sts.test": {"127.0.0.15", untrusted},
		"mx.other.sts.test":   {"127.0.0.16", good},
	} {
		peers[host] = smtptest.NewPeerAt(t, c.ip+":"+strconv.Itoa(port), func(s *smtp.Server) {
			s.Domain = host
			s.TLSConfig = &tls.Config{Certificates: []tls.Certificate{c.cert}}
		})
	}
	mx := func(domain, host, ip string) []string {
		return []string{domain + ". 300 IN MX 10 " + host + ".", host + ". 300 IN A " + ip}
	}
	var signed, unsigned []string
	signed = append(signed, mx("good.dane.test", "mx.good.dane.test", "127.0.0.11")...)
	signed = append(signed, "_25._tcp.mx.good.dane.test. 300 IN TLSA "+tlsa311(good))
	signed = append(signed, mx("bad.dane.test", "mx.bad.dane.test", "127.0.0.12")...)
	signed = append(signed, "_25._tcp.mx.bad.dane.test. 300 IN TLSA "+tlsa311(good)) // not the server's key
	for _, d := range []struct{ domain, host, ip, mode string }{
		{"enforce.sts.test", "mx.enforce.sts.test", "127.0.0.13", "enforce"},
		{"badcert.sts.test", "mx.badcert.sts.test", "127.0.0.14", "enforce"},
		{"testing.sts.test", "mx.testing.sts.test", "127.0.0.15", "testing"},
		{"wrongmx.sts.test", "mx.other.sts.test", "127.0.0.16", "enforce"},
	} {
		unsigned = append(unsigned, mx(d.domain, d.host, d.ip)...)
		unsigned = append(unsigned, "_mta-sts."+d.domain+`. 300 IN TXT "v=STSv1; id=1"`)
	}
	lab := dnsseclab.Start(t, dnsseclab.Config{Zones: []dnsseclab.Zone{
		{Name: "dane.test", Signed: true, Records: signed},
		{Name: "sts.test", Records: unsigned},
	}})
	resolver := &dns.Client{Server: lab.Resolver}

	// The policy host: each domain's policy lists mx.<domain>, so that
	// wrongmx.sts.test's MX (mx.other.sts.test) is not listed.
	policyCert, policyPool := testlib.Certificate("mta-sts.enforce.sts.test", "mta-sts.badcert.sts.test",
		"mta-sts.testing.sts.test", "mta-sts.wrongmx.sts.test")
	https := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		domain := strings.TrimPrefix(strings.Split(r.Host, ":")[0], "mta-sts.")
		mode := "enforce"
		if strings.HasPrefix(domain, "testing.") {
			mode = "testing"
		}
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintf(w, "version: STSv1\r\nmode: %s\r\nmx: mx.%s\r\nmax_age: 86400\r\n", mode, domain)
	}))
	https.TLS = &tls.Config{Certificates: []tls.Certificate{policyCert}}
	https.StartTLS()
	defer https.Close()
	cache, err := mtasts.Open(mtasts.Config{Dir: t.TempDir(), Resolver: resolver, Fetcher: &mtasts.Fetcher{Roots: policyPool,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, https.Listener.Addr().String())
		}}})
	if err != nil {
		t.Fatal(err)
	}

	rep := &reports{}
	q, err := queue.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	d, err := deliver.New(deliver.Config{Queue: q, Resolver: resolver, Hostname: "mx.example.org", Port: strconv.Itoa(port),
		RootCAs: goodPool, TLSPolicy: &tlspolicy.Chain{DANE: resolver, STS: cache.Policy}, TLSReporter: rep,
		FirstRetry: time.Hour, MaxRetry: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	to := map[string]string{} // message ID → its recipient
	send := func(rcpt string, m *queue.Message) string {
		m.From = "sender@example.org"
		m.Recipients = []queue.Recipient{{Address: rcpt}}
		if err := q.Put(m, strings.NewReader("From: sender@example.org\r\nSubject: test\r\n\r\nhello\r\n")); err != nil {
			t.Fatal(err)
		}
		d.Notify(m)
		to[m.ID] = rcpt
		return m.ID
	}
	ids := map[string]string{
		"dane match":                   send("a@good.dane.test", &queue.Message{}),
		"dane mismatch":                send("a@bad.dane.test", &queue.Message{}),
		"sts enforce":                  send("a@enforce.sts.test", &queue.Message{}),
		"sts enforce, bad certificate": send("a@badcert.sts.test", &queue.Message{}),
		"sts enforce, MX not listed":   send("a@wrongmx.sts.test", &queue.Message{}),
		"sts testing, bad certificate": send("a@testing.sts.test", &queue.Message{}),
		"requiretls, peer without it":  send("b@good.dane.test", &queue.Message{RequireTLS: true}),
		"TLS-Required: No, bad cert":   send("b@badcert.sts.test", &queue.Message{TLSRequiredNo: true}),
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); d.Run(ctx) }()
	defer func() { cancel(); <-done }()

	// state is what became of the recipient of message id: delivered
	// (gone from the queue), deferred, or failed.
	received := func(to string) bool {
		for _, p := range peers {
			for _, m := range p.Received() {
				if len(m.Rcpts) == 1 && m.Rcpts[0] == to {
					return true
				}
			}
		}
		return false
	}
	bounced := func(to string) string {
		msgs, _ := q.List()
		for _, m := range msgs {
			if m.From != "" {
				continue
			}
			f, err := q.Data(m.ID)
			if err != nil {
				continue
			}
			b, _ := io.ReadAll(f)
			f.Close()
			if strings.Contains(string(b), "Final-Recipient: rfc822;"+to) {
				return string(b)
			}
		}
		return ""
	}
	state := func(id string) (string, queue.Recipient) {
		m, err := q.Get(id)
		if err != nil {
			switch {
			case received(to[id]):
				return "delivered", queue.Recipient{}
			case bounced(to[id]) != "":
				return "failed", queue.Recipient{LastError: bounced(to[id])}
			}
			return "gone", queue.Recipient{}
		}
		r := m.Recipients[0]
		switch {
		case r.Status == queue.Failed:
			return "failed", r
		case r.Attempts > 0:
			return "deferred", r
		}
		return "", r
	}
	want := map[string]string{
		"dane match": "delivered", "dane mismatch": "deferred",
		"sts enforce": "delivered", "sts enforce, bad certificate": "deferred", "sts enforce, MX not listed": "deferred",
		"sts testing, bad certificate": "delivered",
		"requiretls, peer without it":  "failed",
		"TLS-Required: No, bad cert":   "delivered",
	}
	for end := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		pending := 0
		for name := range want {
			if s, _ := state(ids[name]); s == "" {
				pending++
			}
		}
		if pending == 0 {
			break
		}
		if time.Now().After(end) {
			t.Fatalf("%d messages still undecided", pending)
		}
	}
	for name, w := range want {
		got, r := state(ids[name])
		if got != w {
			t.Errorf("%s: %s (%s), want %s", name, got, r.LastError, w)
		}
		if name == "requiretls, peer without it" && !strings.Contains(r.LastError, "5.7.30") {
			t.Errorf("%s: %s", name, r.LastError)
		}
	}
	if n := len(peers["mx.bad.dane.test"].Received()) + len(peers["mx.badcert.sts.test"].Received()) - 1; n != 0 {
		t.Errorf("%d messages went where the policy forbids", n)
	}
	// The reports: the DANE failure and the MTA-STS ones, by policy.
	for _, c := range []struct{ domain, policy, result string }{
		{"bad.dane.test", "tlsa", "validation-failure"},
		{"wrongmx.sts.test", "sts", "validation-failure"},
		{"badcert.sts.test", "sts", "certificate-not-trusted"},
		{"testing.sts.test", "sts", "certificate-not-trusted"},
		{"good.dane.test", "tlsa", ""},
		{"enforce.sts.test", "sts", ""},
	} {
		found := false
		for _, o := range rep.of(c.domain) {
			if o.Policy == c.policy && o.Failure == c.result {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: no %s report of %q in %+v", c.domain, c.policy, c.result, rep.of(c.domain))
		}
	}
}
