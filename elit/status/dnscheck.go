package status

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"elit.local/elit/dns"
	"elit.local/elit/records"
)

// Resolver is what the DNS check asks; dns.Resolver has it. A resolver
// that also has LookupSRV (dns.Client) gets the SRV records checked.
type Resolver interface {
	LookupMX(ctx context.Context, domain string) ([]dns.MX, error)
	LookupAddrs(ctx context.Context, host string) ([]netip.Addr, error)
	LookupTXT(ctx context.Context, name string) ([]string, error)
	LookupTLSA(ctx context.Context, name string) ([]dns.TLSA, bool, error)
}

type srvResolver interface {
	LookupSRV(ctx context.Context, name string) ([]dns.SRV, error)
}

// The verdicts of the DNS check.
const (
	Right   = "right"   // DNS answers the record
	Missing = "missing" // DNS has no record of the kind
	Wrong   = "wrong"   // DNS has one of the kind, not ours
	Unknown = "unknown" // the lookup failed, or cannot tell
)

// DNSCheck is one record to publish next to what DNS answers now.
type DNSCheck struct {
	Record records.Record `json:"record"`
	State  string         `json:"state"` // Right, Missing, Wrong or Unknown
	Found  []string       `json:"found"` // what DNS answers (of the record's kind)
	Note   string         `json:"note,omitempty"`
}

// dnsCheckFor is how long a DNS check's answers are shown before the page
// asks again (a button asks at once).
const dnsCheckFor = time.Minute

// dnsCheckTimeout bounds the lookups of one check (run in parallel).
const dnsCheckTimeout = 5 * time.Second

// dnsCache keeps the last check.
type dnsCache struct {
	mu     sync.Mutex
	at     time.Time
	checks []DNSCheck
}

// checkDNS returns the check of rs, from the cache when it is recent and
// for the same records.
func (s *Server) checkDNS(ctx context.Context, rs []records.Record) []DNSCheck {
	if s.Resolver == nil {
		return nil
	}
	c := &s.dns
	c.mu.Lock()
	defer c.mu.Unlock()
	if now := s.now(); now.Sub(c.at) < dnsCheckFor && now.Sub(c.at) >= 0 && sameRecords(c.checks, rs) {
		return c.checks
	}
	ctx, cancel := context.WithTimeout(ctx, dnsCheckTimeout)
	defer cancel()
	checks := make([]DNSCheck, len(rs))
	var wg sync.WaitGroup
	for i, r := range rs {
		wg.Go(func() { checks[i] = CheckRecord(ctx, s.Resolver, r) })
	}
	wg.Wait()
	c.at, c.checks = s.now(), checks
	return checks
}

// forgetDNS makes the next page ask DNS again.
func (s *Server) forgetDNS() {
	s.dns.mu.Lock()
	s.dns.at = time.Time{}
	s.dns.mu.Unlock()
}

func sameRecords(cs []DNSCheck, rs []records.Record) bool {
	if len(cs) != len(rs) {
		return false
	}
	for i := range cs {
		if cs[i].Record != rs[i] {
			return false
		}
	}
	return true
}

// CheckRecord looks r up and says whether DNS answers it: MX by the
// host (any preference; RFC 5321 §5.1), A/AAAA by there being any
// address (the public one cannot be known behind NAT), TXT among the
// records of the same kind (the "v=" tag: SPF, DKIM, DMARC, MTA-STS,
// TLSRPT; of DMARC only that there is a policy, whose strictness is the
// operator's choice), SRV by target and port, TLSA by its data, and the
// MTA-STS host's CNAME by its addresses being the MX host's.
func CheckRecord(ctx context.Context, res Resolver, r records.Record) DNSCheck {
	c := DNSCheck{Record: r}
	name := strings.TrimSuffix(r.Name, ".")
	var err error
	switch r.Type {
	case "MX":
		var mxs []dns.MX
		mxs, err = res.LookupMX(ctx, name)
		want := strings.ToLower(strings.TrimSuffix(lastField(r.Value), "."))
		for _, mx := range mxs {
			c.Found = append(c.Found, fmt.Sprintf("%d %s.", mx.Pref, mx.Host))
			if mx.Host == want {
				c.State = Right
			}
		}
	case "A/AAAA":
		var addrs []netip.Addr
		addrs, err = res.LookupAddrs(ctx, name)
		for _, a := range addrs {
			c.Found = append(c.Found, a.String())
		}
		if len(addrs) > 0 {
			c.State, c.Note = Right, "check that these are this server's public addresses"
		}
	case "TXT":
		var txts []string
		txts, err = res.LookupTXT(ctx, name)
		want := unquoteTXT(r.Value)
		kind := txtKind(want)
		for _, t := range txts {
			if txtKind(t) != kind {
				continue
			}
			c.Found = append(c.Found, t)
			if sameTXT(kind, t, want) {
				c.State = Right
			}
		}
		if len(c.Found) > 1 && (kind == "v=spf1" || kind == "v=dmarc1") {
			c.State, c.Note = Wrong, "more than one record of the kind: receivers take none (RFC 7208 §4.5, RFC 7489 §6.6.3)"
		}
	case "SRV":
		sr, ok := res.(srvResolver)
		if !ok {
			c.State, c.Note = Unknown, "not checked (the resolver has no SRV lookup)"
			return c
		}
		var srvs []dns.SRV
		srvs, err = sr.LookupSRV(ctx, name)
		f := strings.Fields(r.Value)
		for _, v := range srvs {
			c.Found = append(c.Found, fmt.Sprintf("%d %d %d %s.", v.Priority, v.Weight, v.Port, v.Target))
			if len(f) == 4 && strconv.Itoa(int(v.Port)) == f[2] && v.Target == strings.ToLower(strings.TrimSuffix(f[3], ".")) {
				c.State = Right
			}
		}
	case "TLSA":
		var tlsas []dns.TLSA
		var secure bool
		tlsas, secure, err = res.LookupTLSA(ctx, name)
		for _, t := range tlsas {
			c.Found = append(c.Found, t.String())
			if strings.EqualFold(t.String(), strings.Join(strings.Fields(r.Value), " ")) {
				c.State = Right
			}
		}
		if len(tlsas) > 0 && !secure {
			c.Note = "the answer is not signed with DNSSEC (or the resolver does not say): senders ignore it"
		}
	case "CNAME":
		var got, want []netip.Addr
		got, err = res.LookupAddrs(ctx, name)
		for _, a := range got {
			c.Found = append(c.Found, a.String())
		}
		if err == nil && len(got) > 0 {
			want, _ = res.LookupAddrs(ctx, strings.TrimSuffix(r.Value, "."))
			c.State = Wrong
			if slices.ContainsFunc(got, func(a netip.Addr) bool { return slices.Contains(want, a) }) {
				c.State = Right
			}
		}
	default:
		c.State, c.Note = Unknown, "not checked"
		return c
	}
	switch {
	case c.State != "":
	case err != nil && !errors.Is(err, dns.ErrNotFound):
		c.State, c.Note = Unknown, "no answer: "+err.Error()
	case len(c.Found) == 0:
		c.State = Missing
	default:
		c.State = Wrong
	}
	return c
}

func lastField(s string) string {
	f := strings.Fields(s)
	if len(f) == 0 {
		return ""
	}
	return f[len(f)-1]
}

// unquoteTXT joins the quoted strings of a TXT value in zone-file form,
// as LookupTXT joins a record's strings.
func unquoteTXT(v string) string {
	if !strings.Contains(v, `"`) {
		return v
	}
	// The strings are every other part: "a" "b" splits as "", a, " ", b, "".
	var b strings.Builder
	parts := strings.Split(v, `"`)
	for i := 1; i < len(parts); i += 2 {
		b.WriteString(parts[i])
	}
	return b.String()
}

// txtKind is a TXT record's version tag in lower case ("v=spf1",
// "v=dkim1", "v=dmarc1", "v=stsv1", "v=tlsrptv1"), "" for another.
func txtKind(t string) string {
	t = strings.ToLower(strings.TrimSpace(t))
	if !strings.HasPrefix(t, "v=") {
		return ""
	}
	end := strings.IndexAny(t, "; \t")
	if end < 0 {
		end = len(t)
	}
	return t[:end]
}

// sameTXT compares TXT records of one kind: tag lists tag by tag (RFC
// 6376 §3.2 and the like: spaces around tags do not count), SPF term by
// term; of a DMARC record, only that it has a policy.
func sameTXT(kind, got, want string) bool {
	switch kind {
	case "v=spf1":
		return strings.EqualFold(strings.Join(strings.Fields(got), " "), strings.Join(strings.Fields(want), " "))
	case "v=dmarc1":
		_, ok := tags(got)["p"]
		return ok
	}
	g, w := tags(got), tags(want)
	if len(g) != len(w) {
		return false
	}
	for k, v := range w {
		if g[k] != v {
			return false
		}
	}
	return true
}

// tags splits a tag list ("v=DKIM1; k=rsa; p=...") into its tags, spaces
// inside values removed (a DKIM key may be folded).
func tags(t string) map[string]string {
	m := map[string]string{}
	for part := range strings.SplitSeq(t, ";") {
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			continue
		}
		m[strings.ToLower(strings.TrimSpace(k))] = strings.Join(strings.Fields(v), "")
	}
	return m
}
