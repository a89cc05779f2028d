package dnsseclab

import (
	"crypto"
	"encoding/base64"
	"fmt"
	"slices"
	"strings"
	"time"

	mdns "github.com/miekg/dns"
)

// zone is a zone as served: its RRsets by owner and type, signed when
// the zone is, with its NSEC chain (RFC 4034 §4).
type zone struct {
	name   string // absolute, lower case
	signed bool
	ksk    *mdns.DNSKEY
	// rrsets by owner (absolute, lower case), then type; sigs the same
	// for the RRSIGs covering them.
	rrsets map[string]map[uint16][]mdns.RR
	sigs   map[string]map[uint16][]mdns.RR
	names  []string // owners in canonical order (RFC 4034 §6.1)
}

const ttl = 300

// newZone builds z: SOA and NS at the apex, the records, and for a
// signed zone a KSK and a ZSK (ECDSA P-256 SHA-256, RFC 6605), the
// DNSKEY RRset, the NSEC chain and every RRset's RRSIG (RFC 4035 §2),
// with broken signatures for the bogus names.
func newZone(z Zone, now time.Time) (*zone, error) {
	apex := strings.ToLower(mdns.Fqdn(z.Name))
	out := &zone{name: apex, signed: z.Signed, rrsets: map[string]map[uint16][]mdns.RR{}, sigs: map[string]map[uint16][]mdns.RR{}}
	add := func(rr mdns.RR) {
		h := rr.Header()
		h.Name = strings.ToLower(h.Name)
		if out.rrsets[h.Name] == nil {
			out.rrsets[h.Name] = map[uint16][]mdns.RR{}
		}
		out.rrsets[h.Name][h.Rrtype] = append(out.rrsets[h.Name][h.Rrtype], rr)
	}
	hdr := func(name string, t uint16) mdns.RR_Header {
		return mdns.RR_Header{Name: name, Rrtype: t, Class: mdns.ClassINET, Ttl: ttl}
	}
	add(&mdns.SOA{Hdr: hdr(apex, mdns.TypeSOA), Ns: "ns." + apex, Mbox: "hostmaster." + apex,
		Serial: 1, Refresh: 3600, Retry: 600, Expire: 86400, Minttl: ttl})
	add(&mdns.NS{Hdr: hdr(apex, mdns.TypeNS), Ns: "ns." + apex})
	add(&mdns.A{Hdr: hdr("ns."+apex, mdns.TypeA), A: []byte{127, 0, 0, 1}})
	for _, s := range z.Records {
		rr, err := mdns.NewRR(s)
		if err != nil {
			return nil, fmt.Errorf("zone %s: %q: %w", z.Name, s, err)
		}
		if rr == nil {
			continue
		}
		if !mdns.IsSubDomain(apex, strings.ToLower(rr.Header().Name)) {
			return nil, fmt.Errorf("zone %s: %q is outside the zone", z.Name, s)
		}
		add(rr)
	}
	if z.Signed {
		if err := out.sign(now, hdr, add, z.Bogus); err != nil {
			return nil, err
		}
	}
	for name := range out.rrsets {
		out.names = append(out.names, name)
	}
	slices.SortFunc(out.names, canonicalCompare)
	return out, nil
}

// sign makes the keys, the DNSKEY and NSEC records and the signatures.
func (z *zone) sign(now time.Time, hdr func(string, uint16) mdns.RR_Header, add func(mdns.RR), bogus []string) error {
	newKey := func(flags uint16) (*mdns.DNSKEY, crypto.Signer, error) {
		k := &mdns.DNSKEY{Hdr: hdr(z.name, mdns.TypeDNSKEY), Flags: flags, Protocol: 3, Algorithm: mdns.ECDSAP256SHA256}
		priv, err := k.Generate(256)
		if err != nil {
			return nil, nil, err
		}
		return k, priv.(crypto.Signer), nil
	}
	ksk, kskPriv, err := newKey(mdns.ZONE | mdns.SEP)
	if err != nil {
		return err
	}
	zsk, zskPriv, err := newKey(mdns.ZONE)
	if err != nil {
		return err
	}
	z.ksk = ksk
	add(ksk)
	add(zsk)
	// NSEC chain (RFC 4034 §4.1): each owner points at the next in
	// canonical order, the last at the apex; the bitmap lists the types
	// at the owner, with RRSIG and NSEC.
	var names []string
	for name := range z.rrsets {
		names = append(names, name)
	}
	slices.SortFunc(names, canonicalCompare)
	for i, name := range names {
		next := names[(i+1)%len(names)]
		types := []uint16{mdns.TypeRRSIG, mdns.TypeNSEC}
		for t := range z.rrsets[name] {
			types = append(types, t)
		}
		slices.Sort(types)
		add(&mdns.NSEC{Hdr: mdns.RR_Header{Name: name, Rrtype: mdns.TypeNSEC, Class: mdns.ClassINET, Ttl: ttl}, NextDomain: next, TypeBitMap: types})
	}
	broken := map[string]bool{}
	for _, b := range bogus {
		broken[strings.ToLower(mdns.Fqdn(b))] = true
	}
	for name, byType := range z.rrsets {
		for t, rrset := range byType {
			key, priv := zsk, zskPriv
			if t == mdns.TypeDNSKEY {
				key, priv = ksk, kskPriv
			}
			sig := &mdns.RRSIG{
				Hdr:        mdns.RR_Header{Name: name, Rrtype: mdns.TypeRRSIG, Class: mdns.ClassINET, Ttl: ttl},
				Inception:  uint32(now.Add(-time.Hour).Unix()),
				Expiration: uint32(now.Add(30 * 24 * time.Hour).Unix()),
				KeyTag:     key.KeyTag(),
				SignerName: z.name,
				Algorithm:  key.Algorithm,
			}
			if err := sig.Sign(priv, rrset); err != nil {
				return fmt.Errorf("zone %s: signing %s %s: %w", z.name, name, mdns.TypeToString[t], err)
			}
			if broken[name] && t != mdns.TypeNSEC {
				raw, _ := base64.StdEncoding.DecodeString(sig.Signature)
				raw[len(raw)/2] ^= 0xff
				sig.Signature = base64.StdEncoding.EncodeToString(raw)
			}
			if z.sigs[name] == nil {
				z.sigs[name] = map[uint16][]mdns.RR{}
			}
			z.sigs[name][t] = []mdns.RR{sig}
		}
	}
	return nil
}

// canonicalCompare orders names as RFC 4034 §6.1 does: by their labels
// from the rightmost, each compared as lower-case octets.
func canonicalCompare(a, b string) int {
	la, lb := mdns.SplitDomainName(a), mdns.SplitDomainName(b)
	for i := 1; i <= len(la) && i <= len(lb); i++ {
		if c := strings.Compare(strings.ToLower(la[len(la)-i]), strings.ToLower(lb[len(lb)-i])); c != 0 {
			return c
		}
	}
	return len(la) - len(lb)
}

// answer fills m's answer to q. A name with records of other types gets
// NODATA, an empty non-terminal too, any other NXDOMAIN; with DO (RFC
// 3225) a signed zone adds the RRSIGs and the NSEC records that prove a
// denial (RFC 4035 §3.1.3). CNAMEs are answered, not followed: the
// resolver follows them.
func (z *zone) answer(m *mdns.Msg, q mdns.Question, do bool) {
	name := strings.ToLower(q.Name)
	withSigs := func(name string, t uint16) []mdns.RR {
		out := slices.Clone(z.rrsets[name][t])
		if do && z.signed {
			out = append(out, z.sigs[name][t]...)
		}
		return out
	}
	soa := func() { m.Ns = append(m.Ns, withSigs(z.name, mdns.TypeSOA)...) }
	if byType, ok := z.rrsets[name]; ok {
		switch {
		case len(byType[q.Qtype]) > 0:
			m.Answer = withSigs(name, q.Qtype)
		case len(byType[mdns.TypeCNAME]) > 0:
			m.Answer = withSigs(name, mdns.TypeCNAME)
		default:
			soa()
			if do && z.signed {
				m.Ns = append(m.Ns, withSigs(name, mdns.TypeNSEC)...)
			}
		}
		return
	}
	for _, owner := range z.names {
		if mdns.IsSubDomain(name, owner) {
			// An empty non-terminal: NODATA, proved by the NSEC that
			// covers it (RFC 4035 §3.1.3.2).
			soa()
			if do && z.signed {
				m.Ns = append(m.Ns, withSigs(z.cover(name), mdns.TypeNSEC)...)
			}
			return
		}
	}
	m.Rcode = mdns.RcodeNameError
	soa()
	if !do || !z.signed {
		return
	}
	// The NSEC that covers the name and the one that covers the
	// wildcard at its closest encloser (RFC 4035 §3.1.3.2).
	ce := name
	for ce != z.name {
		labels := mdns.SplitDomainName(ce)
		ce = mdns.Fqdn(strings.Join(labels[1:], "."))
		if _, ok := z.rrsets[ce]; ok {
			break
		}
	}
	covers := []string{z.cover(name)}
	if w := z.cover("*." + ce); w != covers[0] {
		covers = append(covers, w)
	}
	for _, owner := range covers {
		m.Ns = append(m.Ns, withSigs(owner, mdns.TypeNSEC)...)
	}
}

// cover returns the owner of the NSEC record that covers name: the last
// owner before it in canonical order (the chain wraps to the apex).
func (z *zone) cover(name string) string {
	owner := z.names[len(z.names)-1]
	for _, n := range z.names {
		if canonicalCompare(n, name) >= 0 {
			break
		}
		owner = n
	}
	return owner
}
