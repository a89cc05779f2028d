package dns

// DNSSEC, as a stub resolver sees it. Elit does not validate signatures
// itself: it asks a validating resolver, which sets the AD bit on the
// answers it has authenticated (RFC 4035 §3.2.3) and answers SERVFAIL
// for bogus ones (RFC 4035 §5.5). A stub can believe the AD bit only of
// a resolver it trusts, over a channel it trusts (RFC 4035 §4.9.3; RFC
// 7672 §2.1.3 for DANE): the client believes a resolver on a loopback
// address, which is on the machine, and any other only when told to
// (Client.TrustAD), for a validating resolver on a network the operator
// trusts. An answer from any other resolver is never secure: DANE then
// does not apply, and mail goes out as without DNSSEC.

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	mdns "github.com/miekg/dns"
)

// ErrBogus is a failure that the resolver says is DNSSEC's: the answer
// did not validate (RFC 4035 §5.5; the resolver says so with an
// extended DNS error, RFC 8914 §4.6 to §4.13). It comes with
// ErrTemporary; TLS reports tell it apart (RFC 8460 §4.3.2,
// dnssec-invalid).
var ErrBogus = errors.New("DNSSEC validation failed")

// trusted reports whether the AD bit of server (host:port) is believed.
func (c *Client) trusted(server string) bool {
	if c.TrustAD {
		return true
	}
	ap, err := netip.ParseAddrPort(server)
	return err == nil && ap.Addr().Unmap().IsLoopback()
}

// Validating reports whether the server asked now is trusted to
// validate (its AD bit believed): without one, no answer is secure and
// DANE cannot apply.
func (c *Client) Validating() bool {
	server, err := c.server()
	return err == nil && c.trusted(server)
}

// bogusCodes are the extended DNS errors (RFC 8914 §4) that mean a
// validation failed: indeterminate, bogus, signature expired or not yet
// valid, DNSKEY, RRSIG or NSEC missing, no zone key bit.
var bogusCodes = map[uint16]bool{
	mdns.ExtendedErrorCodeDNSSECIndeterminate:         true,
	mdns.ExtendedErrorCodeDNSBogus:                    true,
	mdns.ExtendedErrorCodeSignatureExpired:            true,
	mdns.ExtendedErrorCodeSignatureNotYetValid:        true,
	mdns.ExtendedErrorCodeDNSKEYMissing:               true,
	mdns.ExtendedErrorCodeRRSIGsMissing:               true,
	mdns.ExtendedErrorCodeNoZoneKeyBitSet:             true,
	mdns.ExtendedErrorCodeNSECMissing:                 true,
	mdns.ExtendedErrorCodeSignatureExpiredBeforeValid: true,
}

// rcodeError is the error of an answer with a failure RCODE, with the
// extended DNS errors the resolver gave (RFC 8914), wrapping ErrBogus
// when one says that DNSSEC validation failed.
func rcodeError(name string, qtype uint16, r *mdns.Msg) error {
	msg := fmt.Sprintf("%s %s: %s", name, mdns.TypeToString[qtype], mdns.RcodeToString[r.Rcode])
	bogus := false
	if opt := r.IsEdns0(); opt != nil {
		for _, o := range opt.Option {
			ede, ok := o.(*mdns.EDNS0_EDE)
			if !ok {
				continue
			}
			msg += " (" + ede.String() + ")"
			bogus = bogus || bogusCodes[ede.InfoCode]
		}
	}
	if bogus {
		return fmt.Errorf("%s: %w", msg, ErrBogus)
	}
	return errors.New(msg)
}

// LookupAddrsSecure implements Resolver. An address literal is its own
// address, not secure: it has no name for DANE.
func (c *Client) LookupAddrsSecure(ctx context.Context, host string) (HostAddrs, error) {
	name := strings.TrimSuffix(strings.ToLower(host), ".")
	if ip, err := netip.ParseAddr(host); err == nil {
		return HostAddrs{Addrs: []netip.Addr{ip}, Name: name}, nil
	}
	out := HostAddrs{Name: name, Secure: true}
	var errs []error
	found := 0
	for _, qtype := range []uint16{mdns.TypeAAAA, mdns.TypeA} {
		r, secure, err := c.exchange(ctx, host, qtype)
		out.Secure = out.Secure && secure
		if errors.Is(err, ErrNotFound) {
			errs = append(errs, err)
			continue
		}
		if err != nil {
			return HostAddrs{}, err
		}
		found++
		target := expand(name, r.Answer)
		out.Name = target
		for _, rr := range r.Answer {
			if strings.TrimSuffix(strings.ToLower(rr.Header().Name), ".") != target {
				continue
			}
			switch rr := rr.(type) {
			case *mdns.A:
				if a, ok := netip.AddrFromSlice(rr.A.To4()); ok && qtype == mdns.TypeA {
					out.Addrs = append(out.Addrs, a)
				}
			case *mdns.AAAA:
				if a, ok := netip.AddrFromSlice(rr.AAAA); ok && qtype == mdns.TypeAAAA {
					out.Addrs = append(out.Addrs, a)
				}
			}
		}
	}
	if found == 0 {
		return HostAddrs{Name: name, Secure: out.Secure}, errors.Join(errs...)
	}
	return out, nil
}

// expand follows name through the CNAME records of an answer (RFC 1034
// §3.6.2) to the name that holds the records, in lower case without the
// final dot.
func expand(name string, answer []mdns.RR) string {
	for range 16 {
		next := ""
		for _, rr := range answer {
			if cn, ok := rr.(*mdns.CNAME); ok && strings.TrimSuffix(strings.ToLower(cn.Hdr.Name), ".") == name {
				next = strings.TrimSuffix(strings.ToLower(cn.Target), ".")
				break
			}
		}
		if next == "" {
			break
		}
		name = next
	}
	return name
}

// LookupTLSA implements Resolver.
func (c *Client) LookupTLSA(ctx context.Context, name string) ([]TLSA, bool, error) {
	r, secure, err := c.exchange(ctx, name, mdns.TypeTLSA)
	if errors.Is(err, ErrNotFound) && r != nil {
		return nil, secure, nil
	}
	if err != nil {
		return nil, false, err
	}
	var out []TLSA
	for _, rr := range r.Answer {
		t, ok := rr.(*mdns.TLSA)
		if !ok {
			continue
		}
		data, err := hex.DecodeString(t.Certificate)
		if err != nil {
			return nil, false, temporary(fmt.Errorf("dns: %s TLSA: %w", name, err))
		}
		out = append(out, TLSA{Usage: t.Usage, Selector: t.Selector, MatchingType: t.MatchingType, Data: data})
	}
	return out, secure, nil
}
