package deliver

import (
	"context"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"

	"golang.org/x/net/proxy"

	"elit.local/elit/queue"
)

// Transport is a way for mail to leave, as in mox: direct delivery to the
// MX hosts, a relay (smarthost) without authentication, or a submission
// server with SASL authentication; any of them through a SOCKS5 proxy.
type Transport struct {
	Name string `json:"-"`
	// Type is "direct", "smarthost" or "submission".
	Type string `json:"type"`
	// Host is the relay's host:port (smarthost, submission).
	Host string `json:"host,omitempty"`
	// TLS for submission: "starttls" (the default) or "implicit". Either is
	// verified against Host; authentication never goes out otherwise.
	TLS       string `json:"tls,omitempty"`
	User      string `json:"user,omitempty"`
	Password  string `json:"password,omitempty"`
	Mechanism string `json:"mechanism,omitempty"` // "" picks the strongest offered
	// CAFile adds trusted certificates (PEM) for verifying the relay.
	CAFile string `json:"ca-file,omitempty"`
	// SOCKS5 is a proxy's host:port to connect through.
	SOCKS5 string `json:"socks5,omitempty"`

	roots *x509.CertPool
}

// Route selects a transport; the first route that matches wins, routes
// for a user before routes for a sender domain before the others. No
// match means direct delivery.
type Route struct {
	User        string   `json:"user,omitempty"`         // the submitting user (its login); "" any
	FromDomains []string `json:"from-domains,omitempty"` // envelope sender domains; none: any
	ToDomains   []string `json:"to-domains,omitempty"`   // recipient domains; none: any
	MinAttempt  int      `json:"min-attempt,omitempty"`  // from this attempt on (the first is 1)
	Transport   string   `json:"transport"`
}

var direct = &Transport{Name: "direct", Type: "direct"}

// setupTransports checks the transports and routes and orders the routes.
func (d *Deliverer) setupTransports() error {
	if d.cfg.Transports == nil {
		d.cfg.Transports = map[string]*Transport{}
	}
	if d.cfg.Smarthost != "" {
		d.cfg.Transports["smarthost"] = &Transport{Type: "smarthost", Host: d.cfg.Smarthost}
		d.cfg.Routes = append(d.cfg.Routes, Route{Transport: "smarthost"})
	}
	for name, t := range d.cfg.Transports {
		t.Name = name
		switch t.Type {
		case "direct":
		case "smarthost", "submission":
			if _, _, err := net.SplitHostPort(t.Host); err != nil {
				return fmt.Errorf("transport %s: host %q: want host:port", name, t.Host)
			}
		default:
			return fmt.Errorf("transport %s: unknown type %q (direct, smarthost, submission)", name, t.Type)
		}
		if t.Type == "submission" && t.TLS != "" && t.TLS != "starttls" && t.TLS != "implicit" {
			return fmt.Errorf("transport %s: tls %q: want starttls or implicit", name, t.TLS)
		}
		if (t.User == "") != (t.Password == "") || (t.User != "" && t.Type != "submission") {
			return fmt.Errorf("transport %s: user and password go together, with type submission", name)
		}
		if t.CAFile != "" {
			pem, err := os.ReadFile(t.CAFile)
			if err != nil {
				return fmt.Errorf("transport %s: %w", name, err)
			}
			t.roots = x509.NewCertPool()
			if !t.roots.AppendCertsFromPEM(pem) {
				return fmt.Errorf("transport %s: no certificate in %s", name, t.CAFile)
			}
		}
	}
	for i, r := range d.cfg.Routes {
		if _, ok := d.cfg.Transports[r.Transport]; !ok && r.Transport != "direct" {
			return fmt.Errorf("route %d: no transport %q", i, r.Transport)
		}
	}
	rank := func(r Route) int {
		switch {
		case r.User != "":
			return 0
		case len(r.FromDomains) > 0:
			return 1
		}
		return 2
	}
	slices.SortStableFunc(d.cfg.Routes, func(a, b Route) int { return rank(a) - rank(b) })
	return nil
}

// transportFor picks the transport of recipient r of m.
func (d *Deliverer) transportFor(m *queue.Message, r queue.Recipient) *Transport {
	from := ""
	if m.From != "" {
		from = domainOf(m.From)
	}
	to := domainOf(r.Address)
	for _, rt := range d.cfg.Routes {
		if rt.User != "" && !strings.EqualFold(rt.User, m.AuthUser) {
			continue
		}
		if len(rt.FromDomains) > 0 && !containsDomain(rt.FromDomains, from) {
			continue
		}
		if len(rt.ToDomains) > 0 && !containsDomain(rt.ToDomains, to) {
			continue
		}
		if rt.MinAttempt > 0 && r.Attempts+1 < rt.MinAttempt {
			continue
		}
		if t := d.cfg.Transports[rt.Transport]; t != nil {
			return t
		}
		return direct
	}
	return direct
}

// containsDomain reports whether list names domain (as domainOf gives
// it), in any case and in U-label or A-label form.
func containsDomain(list []string, domain string) bool {
	for _, x := range list {
		if domainOf("@"+x) == domain {
			return true
		}
	}
	return false
}

// dial connects for transport t, through its SOCKS5 proxy if it has one.
func (d *Deliverer) dial(ctx context.Context, t *Transport, addr string) (net.Conn, error) {
	if t.SOCKS5 == "" {
		return d.cfg.Dial(ctx, "tcp", addr)
	}
	p, err := proxy.SOCKS5("tcp", t.SOCKS5, nil, dialerFunc(d.cfg.Dial))
	if err != nil {
		return nil, err
	}
	return p.(proxy.ContextDialer).DialContext(ctx, "tcp", addr)
}

type dialerFunc func(ctx context.Context, network, addr string) (net.Conn, error)

func (f dialerFunc) Dial(network, addr string) (net.Conn, error) {
	return f(context.Background(), network, addr)
}

func (f dialerFunc) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	return f(ctx, network, addr)
}
