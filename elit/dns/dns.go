// Package dns is the DNS client of Elit: the few lookups mail needs (MX,
// RFC 5321 §5.1; addresses; TXT, for SPF, DKIM, DMARC, MTA-STS), behind
// an interface so that tests use an in-memory resolver or their own
// server on loopback, never the machine's resolver.
package dns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	mdns "github.com/miekg/dns"
)

// MX is one mail exchanger.
type MX struct {
	Host string // without the final dot; "" (from ".") is a null MX (RFC 7505)
	Pref uint16
}

// Errors. A lookup that fails otherwise is temporary (a timeout, SERVFAIL).
var (
	ErrNotFound = errors.New("no such domain") // NXDOMAIN: permanent
)

// Resolver looks up what mail needs. A name that does not exist
// (NXDOMAIN) is ErrNotFound; one that exists without records of the type
// asked gives none and no error: LookupMX then means the implicit MX
// (RFC 5321 §5.1).
type Resolver interface {
	LookupMX(ctx context.Context, domain string) ([]MX, error)
	LookupAddrs(ctx context.Context, host string) ([]netip.Addr, error)
	// LookupTXT returns the TXT records of name (RFC 1035 §3.3.14), each
	// record's strings joined with nothing between them, as SPF (RFC
	// 7208 §3.3), DKIM and DMARC read a record.
	LookupTXT(ctx context.Context, name string) ([]string, error)
}

// Client is a Resolver that asks one DNS server (host:port), over UDP and
// over TCP when the answer is truncated.
type Client struct {
	Server string
	// ResolvConf, used when Server is empty, is a resolv.conf(5) whose
	// first nameserver is asked. It is read at each query: on the
	// appliance DHCP writes it after elit starts.
	ResolvConf string
	Timeout    time.Duration // per query; default 5 s
}

func (c *Client) server() (string, error) {
	if c.Server != "" {
		return c.Server, nil
	}
	if s := ResolvConfServer(c.ResolvConf); s != "" {
		return s, nil
	}
	return "", fmt.Errorf("dns: no nameserver in %s (yet)", c.ResolvConf)
}

// ResolvConfServer returns the first nameserver of a resolv.conf as
// host:port, or "" when there is none.
func ResolvConfServer(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "nameserver" {
			return net.JoinHostPort(f[1], "53")
		}
	}
	return ""
}

func (c *Client) query(ctx context.Context, name string, qtype uint16) (*mdns.Msg, error) {
	m := new(mdns.Msg)
	m.SetQuestion(mdns.Fqdn(name), qtype)
	m.SetEdns0(1232, false)
	timeout := c.Timeout
	if timeout == 0 {
		timeout = 5 * time.Second
	}
	server, err := c.server()
	if err != nil {
		return nil, err
	}
	var lastErr error
	for attempt := 0; attempt < 2; attempt++ {
		cl := &mdns.Client{Net: "udp", Timeout: timeout}
		r, _, err := cl.ExchangeContext(ctx, m, server)
		if err == nil && r.Truncated {
			cl.Net = "tcp"
			r, _, err = cl.ExchangeContext(ctx, m, server)
		}
		if err != nil {
			lastErr = err
			if ctx.Err() != nil {
				break
			}
			continue
		}
		switch r.Rcode {
		case mdns.RcodeSuccess:
			return r, nil
		case mdns.RcodeNameError:
			return nil, fmt.Errorf("%s: %w", name, ErrNotFound)
		default:
			lastErr = fmt.Errorf("%s %s: %s", name, mdns.TypeToString[qtype], mdns.RcodeToString[r.Rcode])
		}
	}
	return nil, fmt.Errorf("dns: %w", lastErr)
}

// LookupMX implements Resolver.
func (c *Client) LookupMX(ctx context.Context, domain string) ([]MX, error) {
	r, err := c.query(ctx, domain, mdns.TypeMX)
	if err != nil {
		return nil, err
	}
	var out []MX
	for _, rr := range r.Answer {
		if mx, ok := rr.(*mdns.MX); ok {
			out = append(out, MX{Host: strings.TrimSuffix(strings.ToLower(mx.Mx), "."), Pref: mx.Preference})
		}
	}
	return out, nil
}

// LookupAddrs implements Resolver: AAAA and A records.
func (c *Client) LookupAddrs(ctx context.Context, host string) ([]netip.Addr, error) {
	if ip, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{ip}, nil
	}
	var out []netip.Addr
	var errs []error
	for _, t := range []uint16{mdns.TypeAAAA, mdns.TypeA} {
		r, err := c.query(ctx, host, t)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, rr := range r.Answer {
			switch rr := rr.(type) {
			case *mdns.A:
				if a, ok := netip.AddrFromSlice(rr.A.To4()); ok {
					out = append(out, a)
				}
			case *mdns.AAAA:
				if a, ok := netip.AddrFromSlice(rr.AAAA); ok {
					out = append(out, a)
				}
			}
		}
	}
	if len(out) == 0 && len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

// LookupTXT implements Resolver.
func (c *Client) LookupTXT(ctx context.Context, name string) ([]string, error) {
	r, err := c.query(ctx, name, mdns.TypeTXT)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, rr := range r.Answer {
		if txt, ok := rr.(*mdns.TXT); ok {
			out = append(out, strings.Join(txt.Txt, ""))
		}
	}
	return out, nil
}

// Mem is an in-memory Resolver for tests: MX records by domain, addresses
// by host, TXT records by name; a name in no map does not exist.
type Mem struct {
	MXs   map[string][]MX
	Addrs map[string][]netip.Addr
	TXTs  map[string][]string
	Fail  map[string]error // names whose lookups fail so
}

// exists reports whether the zone has name.
func (m *Mem) exists(name string) bool {
	_, mx := m.MXs[name]
	_, addrs := m.Addrs[name]
	_, txt := m.TXTs[name]
	return mx || addrs || txt
}

// memLookup answers a query for name from records: its failure, no
// such domain, or its records (none when it has only others).
func memLookup[T any](m *Mem, name string, records map[string][]T) ([]T, error) {
	name = strings.ToLower(name)
	if err := m.Fail[name]; err != nil {
		return nil, err
	}
	if !m.exists(name) {
		return nil, fmt.Errorf("%s: %w", name, ErrNotFound)
	}
	return records[name], nil
}

// LookupMX implements Resolver.
func (m *Mem) LookupMX(_ context.Context, domain string) ([]MX, error) {
	return memLookup(m, domain, m.MXs)
}

// LookupTXT implements Resolver.
func (m *Mem) LookupTXT(_ context.Context, name string) ([]string, error) {
	return memLookup(m, name, m.TXTs)
}

// LookupAddrs implements Resolver.
func (m *Mem) LookupAddrs(_ context.Context, host string) ([]netip.Addr, error) {
	host = strings.ToLower(host)
	if err := m.Fail[host]; err != nil {
		return nil, err
	}
	a, ok := m.Addrs[host]
	if !ok {
		return nil, fmt.Errorf("%s: %w", host, ErrNotFound)
	}
	return a, nil
}
