package dns

import (
	"context"
	"errors"
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
	// TLSAs are TLSA records by name ("_25._tcp.mx.example.com").
	TLSAs map[string][]TLSA
	// CNAMEs are aliases, followed for every type; a chain longer than
	// 8 (a loop) fails temporarily, as resolvers answer SERVFAIL.
	CNAMEs map[string]string
	// Secure are the signed zones: an answer is secure (DNSSEC) when
	// every name it went through (the name asked, each CNAME's target)
	// is one of them or under one. Nothing is secure without them.
	Secure []string
	// Fail makes lookups fail: by name for every type, or by "name TYPE"
	// ("example.com TXT"; TYPE one of A, AAAA, MX, TXT, PTR, TLSA) for
	// one. The error keeps its text; unless it wraps ErrNotFound it is
	// temporary (it wraps ErrTemporary). A bogus answer is an error
	// wrapping ErrBogus.
	Fail map[string]error
}

// exists reports whether the zone has name.
func (m *Mem) exists(name string) bool {
	_, mx := m.MXs[name]
	_, addrs := m.Addrs[name]
	_, txt := m.TXTs[name]
	_, ptr := m.PTRs[name]
	_, tlsa := m.TLSAs[name]
	_, cname := m.CNAMEs[name]
	return mx || addrs || txt || ptr || tlsa || cname
}

// secure reports whether every name of chain is in a signed zone.
func (m *Mem) secure(chain []string) bool {
	for _, name := range chain {
		signed := false
		for _, zone := range m.Secure {
			zone = strings.TrimSuffix(strings.ToLower(zone), ".")
			if name == zone || strings.HasSuffix(name, "."+zone) {
				signed = true
				break
			}
		}
		if !signed {
			return false
		}
	}
	return len(chain) > 0
}

// resolve follows name's aliases to the name holding the records of
// qtype, or fails as Fail says. chain is every name it went through,
// the last one included, also with ErrNotFound.
func (m *Mem) resolve(name, qtype string) (final string, chain []string, err error) {
	name = strings.TrimSuffix(strings.ToLower(name), ".")
	for range 9 {
		chain = append(chain, name)
		for _, key := range []string{name, name + " " + qtype} {
			if err := m.Fail[key]; err != nil {
				return "", chain, temporary(err)
			}
		}
		target, ok := m.CNAMEs[name]
		if !ok {
			if !m.exists(name) {
				return "", chain, fmt.Errorf("%s: %w", name, ErrNotFound)
			}
			return name, chain, nil
		}
		name = strings.TrimSuffix(strings.ToLower(target), ".")
	}
	return "", chain, temporary(fmt.Errorf("%s: CNAME loop", name))
}

// memLookup answers a query for name from records: its failure, no
// such domain, or its records (none when it has only others).
func memLookup[T any](m *Mem, name, qtype string, records map[string][]T) ([]T, error) {
	out, _, err := memLookupSecure(m, name, qtype, records)
	return out, err
}

// memLookupSecure is memLookup with whether the answer is secure.
func memLookupSecure[T any](m *Mem, name, qtype string, records map[string][]T) ([]T, bool, error) {
	final, chain, err := m.resolve(name, qtype)
	if errors.Is(err, ErrNotFound) {
		return nil, m.secure(chain), err
	}
	if err != nil {
		return nil, false, err
	}
	return records[final], m.secure(chain), nil
}

// LookupMX implements Resolver.
func (m *Mem) LookupMX(_ context.Context, domain string) ([]MX, error) {
	return memLookup(m, domain, "MX", m.MXs)
}

// LookupMXSecure implements Resolver.
func (m *Mem) LookupMXSecure(_ context.Context, domain string) ([]MX, bool, error) {
	return memLookupSecure(m, domain, "MX", m.MXs)
}

// LookupTLSA implements Resolver.
func (m *Mem) LookupTLSA(_ context.Context, name string) ([]TLSA, bool, error) {
	out, secure, err := memLookupSecure(m, name, "TLSA", m.TLSAs)
	if errors.Is(err, ErrNotFound) {
		return nil, secure, nil
	}
	if err != nil {
		return nil, false, err
	}
	return out, secure, nil
}

// LookupAddrsSecure implements Resolver.
func (m *Mem) LookupAddrsSecure(_ context.Context, host string) (HostAddrs, error) {
	name := strings.TrimSuffix(strings.ToLower(host), ".")
	if ip, err := netip.ParseAddr(host); err == nil {
		return HostAddrs{Addrs: []netip.Addr{ip}, Name: name}, nil
	}
	out := HostAddrs{Name: name, Secure: true}
	var errs []error
	for _, typ := range []string{"AAAA", "A"} {
		final, chain, err := m.resolve(name, typ)
		out.Secure = out.Secure && m.secure(chain)
		if errors.Is(err, ErrNotFound) {
			errs = append(errs, err)
			continue
		}
		if err != nil {
			return HostAddrs{}, err
		}
		out.Name = final
		for _, a := range m.Addrs[final] {
			if a.Is4() == (typ == "A") {
				out.Addrs = append(out.Addrs, a)
			}
		}
	}
	if len(errs) == 2 {
		return HostAddrs{Name: name, Secure: out.Secure}, errs[0]
	}
	return out, nil
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
