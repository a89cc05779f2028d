// Package dns is the DNS client of Elit: the few lookups mail needs (MX,
// RFC 5321 §5.1; addresses; TXT, for SPF, DKIM, DMARC, MTA-STS; PTR, for
// iprev and SPF's ptr), behind an interface so that tests use an
// in-memory resolver or their own server on loopback, never the
// machine's resolver.
//
// A lookup has three outcomes the checks tell apart (RFC 7208 §5, RFC
// 7489 §6.6.3, RFC 8601 §2.7.3):
//
//   - records, or none: the name exists without records of the type asked
//     (NOERROR with an empty answer): a nil slice and a nil error;
//   - the name does not exist (NXDOMAIN, or a name the DNS cannot hold):
//     an error wrapping [ErrNotFound];
//   - the lookup failed (a timeout, SERVFAIL, REFUSED or any other RCODE,
//     no nameserver, a network error, a CNAME loop): an error wrapping
//     [ErrTemporary]. A check says temperror (and the server 451) only
//     for these.
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

// Errors that lookups wrap; see the package documentation.
var (
	ErrNotFound  = errors.New("no such domain")        // NXDOMAIN: permanent
	ErrTemporary = errors.New("temporary DNS failure") // try again later
)

// temporary marks err as a temporary failure, keeping its text.
func temporary(err error) error {
	if errors.Is(err, ErrTemporary) || errors.Is(err, ErrNotFound) {
		return err
	}
	return tempError{err}
}

type tempError struct{ err error }

func (e tempError) Error() string   { return e.err.Error() }
func (e tempError) Unwrap() []error { return []error{ErrTemporary, e.err} }

// Resolver looks up what mail needs. A name that does not exist
// (NXDOMAIN) is ErrNotFound; one that exists without records of the type
// asked gives none and no error: LookupMX then means the implicit MX
// (RFC 5321 §5.1); a failed lookup is ErrTemporary.
type Resolver interface {
	LookupMX(ctx context.Context, domain string) ([]MX, error)
	// LookupAddrs returns the AAAA and A records of host (an address
	// literal is its own address): an error only when there are none.
	LookupAddrs(ctx context.Context, host string) ([]netip.Addr, error)
	// LookupIP returns the addresses of one family: network "ip4" asks
	// for A records, "ip6" for AAAA (RFC 7208 §5.3 asks for one type).
	LookupIP(ctx context.Context, network, host string) ([]netip.Addr, error)
	// LookupTXT returns the TXT records of name (RFC 1035 §3.3.14), each
	// record's strings joined with nothing between them, as SPF (RFC
	// 7208 §3.3), DKIM and DMARC read a record.
	LookupTXT(ctx context.Context, name string) ([]string, error)
	// LookupPTR returns the names of the PTR records of ip (RFC 1035
	// §3.5; an IPv4-mapped address is looked up as IPv4), in lower
	// case without the final dot, in the order of the answer.
	LookupPTR(ctx context.Context, ip netip.Addr) ([]string, error)

	// The lookups of DANE (RFC 7672 §2.2), which also say whether the
	// answer is secure: authenticated by DNSSEC (RFC 4035 §4.3, RFC
	// 4033 §5) as a resolver the client trusts says (see Client). A
	// bogus answer is a failure: the validating resolver answers
	// SERVFAIL (ErrTemporary, and ErrBogus when it says why).

	// LookupMXSecure is LookupMX, with whether the MX RRset, or its
	// denial, is secure (RFC 7672 §2.2.1).
	LookupMXSecure(ctx context.Context, domain string) ([]MX, bool, error)
	// LookupAddrsSecure returns the AAAA and A records of host, the
	// name they belong to after CNAME expansion, and whether both
	// answers are secure (RFC 7672 §2.2.2). Unlike LookupAddrs, a failed
	// AAAA or A lookup is an error even when the other has records: an
	// answer made bogus must not pass for an insecure one.
	LookupAddrsSecure(ctx context.Context, host string) (HostAddrs, error)
	// LookupTLSA returns the TLSA records of name (RFC 6698 §2), such as
	// _25._tcp.mx.example.com (RFC 7672 §2.2.3), and whether the answer
	// is secure. A name that does not exist has no records: none and
	// no error, secure when the denial is (RFC 4035 §5.4).
	LookupTLSA(ctx context.Context, name string) ([]TLSA, bool, error)
}

// HostAddrs is the answer of LookupAddrsSecure.
type HostAddrs struct {
	Addrs []netip.Addr // AAAA, then A records
	// Name is the host name after the CNAMEs of the answers (RFC 7672
	// §2.2.2 calls it the expanded name), in lower case without the
	// final dot; the host name itself when there is no CNAME.
	Name string
	// Secure: both answers, CNAMEs included, are authenticated.
	Secure bool
}

// TLSA is a TLSA record's data (RFC 6698 §2.1); elit/dane reads it.
type TLSA struct {
	Usage        uint8 // certificate usage (RFC 6698 §2.1.1)
	Selector     uint8 // RFC 6698 §2.1.2
	MatchingType uint8 // RFC 6698 §2.1.3
	Data         []byte
}

// String is the record's data in presentation form (RFC 6698 §2.2):
// "3 1 1 0a1b...", the data in lower-case hexadecimal.
func (t TLSA) String() string {
	return fmt.Sprintf("%d %d %d %x", t.Usage, t.Selector, t.MatchingType, t.Data)
}

// ReverseName returns the name whose PTR records name ip, without the
// final dot: "4.3.2.1.in-addr.arpa" for 1.2.3.4, nibbles under ip6.arpa
// for IPv6 (RFC 3596 §2.5). An IPv4-mapped IPv6 address is taken as IPv4.
func ReverseName(ip netip.Addr) string {
	ip = ip.Unmap()
	var b strings.Builder
	if ip.Is4() {
		a := ip.As4()
		for i := 3; i >= 0; i-- {
			fmt.Fprintf(&b, "%d.", a[i])
		}
		b.WriteString("in-addr.arpa")
		return b.String()
	}
	a := ip.As16()
	const hex = "0123456789abcdef"
	for i := 15; i >= 0; i-- {
		b.WriteByte(hex[a[i]&0xf])
		b.WriteByte('.')
		b.WriteByte(hex[a[i]>>4])
		b.WriteByte('.')
	}
	b.WriteString("ip6.arpa")
	return b.String()
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
	// TrustAD makes the client believe the AD bit of any server it asks;
	// without it, only that of a server on a loopback address
	// (127.0.0.0/8, ::1). See dnssec.go.
	TrustAD bool
}

func (c *Client) server() (string, error) {
	if c.Server != "" {
		return c.Server, nil
	}
	if s := ResolvConfServer(c.ResolvConf); s != "" {
		return s, nil
	}
	return "", temporary(fmt.Errorf("dns: no nameserver in %s (yet)", c.ResolvConf))
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

// query asks for name's records of qtype. A name that cannot be put in
// a query (an empty label, one over 63 octets, over 255 in all) cannot
// exist: ErrNotFound, as RFC 7208 §4.3 and §4.8 treat it.
func (c *Client) query(ctx context.Context, name string, qtype uint16) (*mdns.Msg, error) {
	r, _, err := c.exchange(ctx, name, qtype)
	return r, err
}

// exchange is query that also returns an NXDOMAIN answer (with the
// error) and whether the answer is secure.
func (c *Client) exchange(ctx context.Context, name string, qtype uint16) (*mdns.Msg, bool, error) {
	fqdn := mdns.Fqdn(name)
	if _, ok := mdns.IsDomainName(fqdn); !ok || name == "" || name == "." {
		return nil, false, fmt.Errorf("%s: not a domain name: %w", name, ErrNotFound)
	}
	m := new(mdns.Msg)
	m.SetQuestion(fqdn, qtype)
	// DO asks for DNSSEC (RFC 3225, RFC 4035 §3.2.1), AD for the
	// resolver's verdict (RFC 6840 §5.7); CD stays clear, so a validating
	// resolver validates (RFC 4035 §3.2.2).
	m.SetEdns0(1232, true)
	m.AuthenticatedData = true
	timeout := c.Timeout
	if timeout == 0 {
		timeout = 5 * time.Second
	}
	server, err := c.server()
	if err != nil {
		return nil, false, err
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
		secure := r.AuthenticatedData && c.trusted(server)
		switch r.Rcode {
		case mdns.RcodeSuccess:
			traceOf(ctx).add(secure)
			return r, secure, nil
		case mdns.RcodeNameError:
			traceOf(ctx).add(secure)
			return r, secure, fmt.Errorf("%s: %w", name, ErrNotFound)
		default:
			lastErr = rcodeError(name, qtype, r)
			if errors.Is(lastErr, ErrBogus) {
				// The resolver has validated: asking again gets the
				// same verdict.
				return nil, false, temporary(fmt.Errorf("dns: %w", lastErr))
			}
		}
	}
	return nil, false, temporary(fmt.Errorf("dns: %w", lastErr))
}

// LookupMX implements Resolver.
func (c *Client) LookupMX(ctx context.Context, domain string) ([]MX, error) {
	mxs, _, err := c.LookupMXSecure(ctx, domain)
	return mxs, err
}

// LookupMXSecure implements Resolver.
func (c *Client) LookupMXSecure(ctx context.Context, domain string) ([]MX, bool, error) {
	r, secure, err := c.exchange(ctx, domain, mdns.TypeMX)
	if err != nil {
		return nil, secure, err
	}
	var out []MX
	for _, rr := range r.Answer {
		if mx, ok := rr.(*mdns.MX); ok {
			out = append(out, MX{Host: strings.TrimSuffix(strings.ToLower(mx.Mx), "."), Pref: mx.Preference})
		}
	}
	return out, secure, nil
}

// LookupAddrs implements Resolver: AAAA and A records.
func (c *Client) LookupAddrs(ctx context.Context, host string) ([]netip.Addr, error) {
	if ip, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{ip}, nil
	}
	var out []netip.Addr
	var errs []error
	for _, network := range []string{"ip6", "ip4"} {
		addrs, err := c.LookupIP(ctx, network, host)
		if err != nil {
			errs = append(errs, err)
		}
		out = append(out, addrs...)
	}
	if len(out) == 0 && len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

// LookupIP implements Resolver.
func (c *Client) LookupIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	qtype, err := addrType(network)
	if err != nil {
		return nil, err
	}
	r, err := c.query(ctx, host, qtype)
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	for _, rr := range r.Answer {
		switch rr := rr.(type) {
		case *mdns.A:
			if a, ok := netip.AddrFromSlice(rr.A.To4()); ok && qtype == mdns.TypeA {
				out = append(out, a)
			}
		case *mdns.AAAA:
			if a, ok := netip.AddrFromSlice(rr.AAAA); ok && qtype == mdns.TypeAAAA {
				out = append(out, a)
			}
		}
	}
	return out, nil
}

func addrType(network string) (uint16, error) {
	switch network {
	case "ip4":
		return mdns.TypeA, nil
	case "ip6":
		return mdns.TypeAAAA, nil
	}
	return 0, fmt.Errorf("dns: network %q: want ip4 or ip6", network)
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

// SRV is a service record's data (RFC 2782).
type SRV struct {
	Priority, Weight, Port uint16
	Target                 string // in lower case without the final dot
}

// LookupSRV returns the SRV records of name (RFC 2782), such as
// _submissions._tcp.example.org (RFC 6186 §3.1). It is not part of
// Resolver: only the status page's DNS check asks.
func (c *Client) LookupSRV(ctx context.Context, name string) ([]SRV, error) {
	r, err := c.query(ctx, name, mdns.TypeSRV)
	if err != nil {
		return nil, err
	}
	var out []SRV
	for _, rr := range r.Answer {
		if srv, ok := rr.(*mdns.SRV); ok {
			out = append(out, SRV{srv.Priority, srv.Weight, srv.Port, strings.TrimSuffix(strings.ToLower(srv.Target), ".")})
		}
	}
	return out, nil
}

// LookupPTR implements Resolver.
func (c *Client) LookupPTR(ctx context.Context, ip netip.Addr) ([]string, error) {
	r, err := c.query(ctx, ReverseName(ip), mdns.TypePTR)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, rr := range r.Answer {
		if ptr, ok := rr.(*mdns.PTR); ok {
			out = append(out, strings.TrimSuffix(strings.ToLower(ptr.Ptr), "."))
		}
	}
	return out, nil
}
