package spf

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"elit.local/elit/dns"
)

// Limits of §4.6.4.
const (
	maxLookups     = 10 // terms that query the DNS
	maxVoidLookups = 2  // lookups with no answer or NXDOMAIN
	maxNames       = 10 // MX names per mx, PTR names per ptr and %{p}
)

// checker is one evaluation of check_host() and the state its nested
// evaluations share: the limits count over the whole check (§4.6.4).
type checker struct {
	ctx          context.Context
	r            dns.Resolver
	ip           netip.Addr // unmapped: an IPv4-mapped address is IPv4 (§5)
	helo         string
	local        string // of the sender
	senderDomain string
	receiver     string
	now          func() time.Time

	lookups, voids int
	valid          []string // the client's validated names, for %{p}
	haveValid      bool
}

// outcome is the result of check_host() on one domain.
type outcome struct {
	verdict     Verdict
	mechanism   string
	explanation string
	err         error
}

func failed(v Verdict, err error) outcome { return outcome{verdict: v, err: err} }

// errLimit marks a limit of §4.6.4 passed: permerror.
var errLimit = errors.New("spf: limit passed")

// checkHost is check_host() (§4) for domain; inInclude says it runs for
// an include, whose explanation is never used (§6.2).
func (c *checker) checkHost(domain string, inInclude bool) outcome {
	rec, err := c.record(domain)
	if errors.Is(err, errNoRecord) {
		return failed(None, err)
	}
	if err != nil {
		return failed(verdictOf(err, PermError), err)
	}
	for _, d := range rec.directives {
		match, err := c.match(d, domain)
		if err != nil {
			return failed(verdictOf(err, PermError), err)
		}
		if match {
			out := outcome{verdict: d.result, mechanism: d.term}
			if d.result == Fail && !inInclude && rec.exp != nil {
				out.explanation = c.explain(rec.exp, domain)
			}
			return out
		}
	}
	if rec.redirect != nil { // §6.1, after every mechanism
		if err := c.count(); err != nil {
			return failed(PermError, err)
		}
		target := c.target(rec.redirect, domain)
		out := c.checkHost(target, inInclude)
		if out.verdict == None {
			out.verdict = PermError
			out.err = fmt.Errorf("spf: redirect=%s: %w", target, out.err)
		}
		return out
	}
	return outcome{verdict: Neutral} // §4.7
}

// verdictOf maps an error to temperror (a temporary DNS failure) or to
// otherwise.
func verdictOf(err error, otherwise Verdict) Verdict {
	if errors.Is(err, dns.ErrTemporary) {
		return TempError
	}
	return otherwise
}

// errNoRecord marks a domain without an SPF record: none (§4.5).
var errNoRecord = errors.New("no SPF record")

// record finds and parses domain's SPF record (§4.4, §4.5). Without one
// the error wraps errNoRecord; when the lookup failed, dns.ErrTemporary;
// any other error is a permerror.
func (c *checker) record(domain string) (*record, error) {
	if !validName(domain) {
		return nil, fmt.Errorf("spf: %q is not a domain name: %w", domain, errNoRecord)
	}
	txts, err := c.r.LookupTXT(c.ctx, domain)
	if errors.Is(err, dns.ErrNotFound) {
		return nil, fmt.Errorf("spf: %s: %w", domain, errNoRecord)
	}
	if err != nil {
		return nil, fmt.Errorf("spf: SPF record of %s: %w", domain, temporary(err))
	}
	var found []string
	for _, t := range txts {
		if isSPF(t) {
			found = append(found, t)
		}
	}
	switch len(found) {
	case 0:
		return nil, fmt.Errorf("spf: %s: %w", domain, errNoRecord)
	case 1:
	default:
		return nil, fmt.Errorf("spf: %s has %d SPF records (§4.5)", domain, len(found))
	}
	rec, err := parseRecord(found[0])
	if err != nil {
		return nil, fmt.Errorf("spf: SPF record of %s: %w", domain, err)
	}
	return rec, nil
}

// temporary makes any lookup error but NXDOMAIN a temporary one: an
// RCODE other than 0 and 3, or a timeout, is temperror (§5, §4.4).
func temporary(err error) error {
	if errors.Is(err, dns.ErrTemporary) {
		return err
	}
	return fmt.Errorf("%w: %w", dns.ErrTemporary, err)
}

// count counts a term that queries the DNS (§4.6.4).
func (c *checker) count() error {
	c.lookups++
	if c.lookups > maxLookups {
		return fmt.Errorf("%w: over %d DNS-querying terms (§4.6.4)", errLimit, maxLookups)
	}
	return nil
}

// void counts a lookup that found nothing (§4.6.4).
func (c *checker) void() error {
	c.voids++
	if c.voids > maxVoidLookups {
		return fmt.Errorf("%w: over %d void lookups (§4.6.4)", errLimit, maxVoidLookups)
	}
	return nil
}

// target expands a domain-spec to a name to look up (§4.8, §7.4): no
// final dot, shortened from the left to 253 octets.
func (c *checker) target(ds macroString, domain string) string {
	name := strings.TrimSuffix(ds.expand(c.value(domain, false)), ".")
	for len(name) > 253 {
		i := strings.IndexByte(name, '.')
		if i < 0 {
			break
		}
		name = name[i+1:]
	}
	return name
}

// network is the DNS network of the client's address family.
func (c *checker) network() string {
	if c.ip.Is4() {
		return "ip4"
	}
	return "ip6"
}

// match evaluates a mechanism (§5). An error is a temperror when it
// wraps dns.ErrTemporary, else a permerror.
func (c *checker) match(d directive, domain string) (bool, error) {
	switch d.mech {
	case "all": // §5.1
		return true, nil
	case "ip4", "ip6": // §5.6
		return d.prefix.Contains(c.ip), nil
	}
	if err := c.count(); err != nil {
		return false, err
	}
	target := domain
	if d.domain != nil {
		target = c.target(d.domain, domain)
	}
	switch d.mech {
	case "include": // §5.2
		out := c.checkHost(target, true)
		switch out.verdict {
		case Pass:
			return true, nil
		case Fail, SoftFail, Neutral:
			return false, nil
		case TempError:
			return false, out.err
		}
		return false, fmt.Errorf("spf: include:%s: %s: %w", target, out.verdict, out.err)
	case "a": // §5.3
		addrs, err := c.addrs(c.network(), target, true)
		if err != nil {
			return false, err
		}
		return c.contains(addrs, d), nil
	case "mx": // §5.4
		mxs, err := c.r.LookupMX(c.ctx, target)
		if err != nil && !errors.Is(err, dns.ErrNotFound) {
			return false, temporary(err)
		}
		if len(mxs) == 0 {
			return false, c.void()
		}
		if len(mxs) > maxNames {
			return false, fmt.Errorf("%w: %s has %d MX records, over %d (§4.6.4)", errLimit, target, len(mxs), maxNames)
		}
		for _, mx := range mxs {
			if mx.Host == "" { // a null MX has no address
				continue
			}
			addrs, err := c.addrs(c.network(), mx.Host, false)
			if err != nil {
				return false, err
			}
			if c.contains(addrs, d) {
				return true, nil
			}
		}
		return false, nil
	case "ptr": // §5.5
		names, err := c.r.LookupPTR(c.ctx, c.ip)
		if err != nil && !errors.Is(err, dns.ErrNotFound) {
			return false, nil // a DNS error: no match
		}
		if len(names) == 0 {
			return false, c.void()
		}
		for _, n := range c.validated(names, target) {
			if isSubdomain(n, target) {
				return true, nil
			}
		}
		return false, nil
	case "exists": // §5.7: an A lookup whatever the client's family
		addrs, err := c.addrs("ip4", target, true)
		return len(addrs) > 0, err
	}
	panic("BUG: unknown mechanism " + d.mech)
}

// addrs looks up name's addresses of a family; NXDOMAIN is no records
// (§5), counted as void when countVoid.
func (c *checker) addrs(network, name string, countVoid bool) ([]netip.Addr, error) {
	addrs, err := c.r.LookupIP(c.ctx, network, name)
	if err != nil && !errors.Is(err, dns.ErrNotFound) {
		return nil, temporary(err)
	}
	if len(addrs) == 0 && countVoid {
		return nil, c.void()
	}
	return addrs, nil
}

// contains reports whether an address of addrs, widened to the
// mechanism's CIDR length, holds the client's (§5.3).
func (c *checker) contains(addrs []netip.Addr, d directive) bool {
	bits := d.cidr6
	if c.ip.Is4() {
		bits = d.cidr4
	}
	for _, a := range addrs {
		a = a.Unmap()
		if a.Is4() != c.ip.Is4() {
			continue
		}
		if p, err := a.Prefix(bits); err == nil && p.Contains(c.ip) {
			return true
		}
	}
	return false
}

// validated returns the names, of the first 10 PTR names, that are
// target or under it and have the client's address: validated (§5.5).
// A failed address lookup skips its name. The order is kept.
func (c *checker) validated(names []string, target string) []string {
	if len(names) > maxNames {
		names = names[:maxNames]
	}
	var out []string
	for _, n := range names {
		if target != "" && !isSubdomain(n, target) {
			continue
		}
		addrs, err := c.r.LookupIP(c.ctx, c.network(), n)
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if a.Unmap() == c.ip {
				out = append(out, n)
				break
			}
		}
	}
	return out
}

// isSubdomain reports whether name is domain or a name under it, in any
// case (§5.5).
func isSubdomain(name, domain string) bool {
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	return name == domain || strings.HasSuffix(name, "."+domain)
}

// explain computes the explanation of a fail (§6.2): the one TXT record
// at the exp= target, expanded; "" on any problem, which is as if there
// were no exp=. This lookup counts towards no limit.
func (c *checker) explain(exp macroString, domain string) string {
	name := c.target(exp, domain)
	if !validName(name) {
		return ""
	}
	txts, err := c.r.LookupTXT(c.ctx, name)
	if err != nil || len(txts) != 1 {
		return ""
	}
	ms, err := parseMacroString(txts[0], true)
	if err != nil {
		return ""
	}
	text := ms.expand(c.value(domain, true))
	for i := 0; i < len(text); i++ {
		if text[i] < 0x20 || text[i] > 0x7e {
			return ""
		}
	}
	return text
}

// value returns the values of macro letters (§7.3) while evaluating
// domain's record.
func (c *checker) value(domain string, explain bool) func(byte) string {
	return func(l byte) string {
		switch l {
		case 's':
			return c.local + "@" + c.senderDomain
		case 'l':
			return c.local
		case 'o':
			return c.senderDomain
		case 'd':
			return domain
		case 'i':
			return dottedIP(c.ip)
		case 'p':
			return c.validName(domain)
		case 'v':
			if c.ip.Is4() {
				return "in-addr"
			}
			return "ip6"
		case 'h':
			return c.helo
		case 'c':
			return c.ip.String()
		case 'r':
			return c.receiver
		case 't':
			return strconv.FormatInt(c.now().Unix(), 10)
		}
		panic("BUG: macro letter " + string(l))
	}
}

// validName is %{p} (§7.3): a validated name of the client, domain or
// under it if one is, "unknown" without one. Its lookups count towards
// no limit but the 10 names of §4.6.4, and are made once per check
// however many %{p} a record has.
func (c *checker) validName(domain string) string {
	if !c.haveValid {
		c.haveValid = true
		if names, err := c.r.LookupPTR(c.ctx, c.ip); err == nil {
			c.valid = c.validated(names, "")
		}
	}
	valid := c.valid
	for _, n := range valid {
		if isSubdomain(n, domain) {
			return n
		}
	}
	if len(valid) > 0 {
		return valid[0]
	}
	return "unknown"
}

// dottedIP is %{i} (§7.3): dotted decimal for IPv4, dotted nibbles for
// IPv6. The nibbles are in upper case, as pyspf writes them and the
// RFC 7208 test suite expects in an explanation (v-macro-ip6); §7.4's
// example has lower case, which the DNS does not tell apart.
func dottedIP(ip netip.Addr) string {
	if ip.Is4() {
		return ip.String()
	}
	a := ip.As16()
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i, x := range a {
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteByte(hex[x>>4])
		b.WriteByte('.')
		b.WriteByte(hex[x&0xf])
	}
	return b.String()
}
