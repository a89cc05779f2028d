package dns

import (
	"context"
	"fmt"
	"net/netip"
	"strings"

	mdns "github.com/miekg/dns"
)

// Mem is an in-memory Resolver for tests, answering as a recursive
// resolver would. Keys are names in lower case without the final dot;
// a name in no map does not exist (NXDOMAIN).
type Mem struct {
	MXs   map[string][]MX
	Addrs map[string][]netip.Addr // A and AAAA records, in answer order
	TXTs  map[string][]string
	// PTRs are PTR records by reverse name (ReverseName), each a name,
	// in answer order.
	PTRs map[string][]string
	// CNAMEs are aliases, followed for every type; a chain longer than
	// 8 (a loop) fails temporarily, as resolvers answer SERVFAIL.
	CNAMEs map[string]string
	// Fail makes lookups fail: by name for every type, or by "name TYPE"
	// ("example.com TXT"; TYPE one of A, AAAA, MX, TXT, PTR) for one.
	// The error keeps its text; unless it wraps ErrNotFound it is
	// temporary (it wraps ErrTemporary).
	Fail map[string]error
}

// exists reports whether the zone has name.
func (m *Mem) exists(name string) bool {
	_, mx := m.MXs[name]
	_, addrs := m.Addrs[name]
	_, txt := m.TXTs[name]
	_, ptr := m.PTRs[name]
	_, cname := m.CNAMEs[name]
	return mx || addrs || txt || ptr || cname
}

// resolve follows name's aliases to the name holding the records of
// qtype, or fails as Fail says.
func (m *Mem) resolve(name, qtype string) (string, error) {
	name = strings.TrimSuffix(strings.ToLower(name), ".")
	for range 9 {
		for _, key := range []string{name, name + " " + qtype} {
			if err := m.Fail[key]; err != nil {
				return "", temporary(err)
			}
		}
		target, ok := m.CNAMEs[name]
		if !ok {
			if !m.exists(name) {
				return "", fmt.Errorf("%s: %w", name, ErrNotFound)
			}
			return name, nil
		}
		name = strings.TrimSuffix(strings.ToLower(target), ".")
	}
	return "", temporary(fmt.Errorf("%s: CNAME loop", name))
}

// memLookup answers a query for name from records: its failure, no
// such domain, or its records (none when it has only others).
func memLookup[T any](m *Mem, name, qtype string, records map[string][]T) ([]T, error) {
	name, err := m.resolve(name, qtype)
	if err != nil {
		return nil, err
	}
	return records[name], nil
}

// LookupMX implements Resolver.
func (m *Mem) LookupMX(_ context.Context, domain string) ([]MX, error) {
	return memLookup(m, domain, "MX", m.MXs)
}

// LookupTXT implements Resolver.
func (m *Mem) LookupTXT(_ context.Context, name string) ([]string, error) {
	return memLookup(m, name, "TXT", m.TXTs)
}

// LookupPTR implements Resolver.
func (m *Mem) LookupPTR(_ context.Context, ip netip.Addr) ([]string, error) {
	names, err := memLookup(m, ReverseName(ip), "PTR", m.PTRs)
	var out []string
	for _, n := range names {
		out = append(out, strings.TrimSuffix(strings.ToLower(n), "."))
	}
	return out, err
}

// LookupIP implements Resolver.
func (m *Mem) LookupIP(_ context.Context, network, host string) ([]netip.Addr, error) {
	qtype, err := addrType(network)
	if err != nil {
		return nil, err
	}
	typ := "A"
	if qtype == mdns.TypeAAAA {
		typ = "AAAA"
	}
	addrs, err := memLookup(m, host, typ, m.Addrs)
	var out []netip.Addr
	for _, a := range addrs {
		if a.Is4() == (typ == "A") {
			out = append(out, a)
		}
	}
	return out, err
}

// LookupAddrs implements Resolver.
func (m *Mem) LookupAddrs(ctx context.Context, host string) ([]netip.Addr, error) {
	if ip, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{ip}, nil
	}
	v6, err6 := m.LookupIP(ctx, "ip6", host)
	v4, err4 := m.LookupIP(ctx, "ip4", host)
	out := append(v6, v4...)
	if len(out) == 0 {
		if err6 != nil {
			return nil, err6
		}
		return nil, err4
	}
	return out, nil
}
