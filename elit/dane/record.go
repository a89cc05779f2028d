// Package dane authenticates SMTP servers with DANE (RFC 6698, with
// RFC 7671's updates and RFC 7672 for SMTP): TLSA records, published in
// a DNSSEC-signed zone at _25._tcp.HOST, name the certificate or key an
// MX host serves, or the CA that issues it.
//
// Lookup finds a host's records as RFC 7672 §2.2 says (the MX RRset
// secure, the host's addresses secure, TLSA at the CNAME-expanded name
// then at the MX host name) and returns the Policy that applies: none
// (DNSSEC does not cover the host; other policies decide), TLS without
// authentication (TLSA records, none usable), or TLS verified against
// the records, without fallback (RFC 7672 §2.2). Verify, and
// Policy.VerifyConnection for tls.Config, check a server's chain
// against the records (RFC 7672 §3.1): DANE-EE(3) matches the server's
// certificate or key whatever its names and dates; DANE-TA(2) matches a
// certificate of the chain the server sent (or, given whole, the
// record's own), to which the server's certificate must chain, valid at
// the time and for one of the reference names. PKIX-TA(0) and PKIX-EE(1)
// are not usable for SMTP (RFC 7672 §3.1.3).
//
// Parse reads a record in presentation form, Usable says whether a
// record can be used, and Record makes the record of a certificate, as
// the 3 1 1 record (DANE-EE, SPKI, SHA-256) a server publishes for its
// own key (RFC 7671 §5.1).
package dane

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"elit.local/elit/dns"
)

// Certificate usages (RFC 6698 §2.1.1, named as RFC 7218 §2.1 does).
const (
	UsagePKIXTA uint8 = 0 // CA constraint: not usable for SMTP
	UsagePKIXEE uint8 = 1 // service certificate constraint: not usable for SMTP
	UsageDANETA uint8 = 2 // trust anchor assertion
	UsageDANEEE uint8 = 3 // domain-issued certificate
)

// Selectors (RFC 6698 §2.1.2).
const (
	SelectorCert uint8 = 0 // the whole certificate (DER)
	SelectorSPKI uint8 = 1 // its SubjectPublicKeyInfo (DER)
)

// Matching types (RFC 6698 §2.1.3).
const (
	MatchFull   uint8 = 0 // the selected content itself
	MatchSHA256 uint8 = 1
	MatchSHA512 uint8 = 2
)

// Parse reads the data of a TLSA record in presentation form (RFC 6698
// §2.2): usage, selector and matching type as decimal numbers, then the
// association data in hexadecimal, which may be split by white space.
// The record need not be usable (see Usable).
func Parse(s string) (dns.TLSA, error) {
	f := strings.Fields(s)
	if len(f) < 4 {
		return dns.TLSA{}, fmt.Errorf("TLSA record %q: want usage, selector, matching type and data", s)
	}
	var nums [3]uint8
	for i, name := range []string{"usage", "selector", "matching type"} {
		n, err := strconv.ParseUint(f[i], 10, 8)
		if err != nil {
			return dns.TLSA{}, fmt.Errorf("TLSA record %q: %s %q: want 0 to 255", s, name, f[i])
		}
		nums[i] = uint8(n)
	}
	data, err := hex.DecodeString(strings.Join(f[3:], ""))
	if err != nil {
		return dns.TLSA{}, fmt.Errorf("TLSA record %q: data: %w", s, err)
	}
	if len(data) == 0 {
		return dns.TLSA{}, fmt.Errorf("TLSA record %q: no data", s)
	}
	return dns.TLSA{Usage: nums[0], Selector: nums[1], MatchingType: nums[2], Data: data}, nil
}

// Usable returns why r cannot be used to authenticate an SMTP server,
// or nil: its usage must be DANE-TA or DANE-EE (RFC 7672 §3.1.3), its
// selector and matching type known (RFC 6698 §2.1.2, §2.1.3), and a
// digest as long as its function's output (RFC 7671 §10.1.2 tells
// clients to ignore records that cannot match).
func Usable(r dns.TLSA) error {
	switch r.Usage {
	case UsageDANETA, UsageDANEEE:
	case UsagePKIXTA, UsagePKIXEE:
		return fmt.Errorf("usage %d (PKIX) is not for SMTP (RFC 7672 §3.1.3)", r.Usage)
	default:
		return fmt.Errorf("unknown usage %d", r.Usage)
	}
	if r.Selector != SelectorCert && r.Selector != SelectorSPKI {
		return fmt.Errorf("unknown selector %d", r.Selector)
	}
	want := 0
	switch r.MatchingType {
	case MatchFull:
	case MatchSHA256:
		want = sha256.Size
	case MatchSHA512:
		want = sha512.Size
	default:
		return fmt.Errorf("unknown matching type %d", r.MatchingType)
	}
	if want != 0 && len(r.Data) != want {
		return fmt.Errorf("matching type %d: %d octets of data, want %d", r.MatchingType, len(r.Data), want)
	}
	if len(r.Data) == 0 {
		return errors.New("no data")
	}
	return nil
}

// UsableRecords returns the usable records of rs.
func UsableRecords(rs []dns.TLSA) []dns.TLSA {
	var out []dns.TLSA
	for _, r := range rs {
		if Usable(r) == nil {
			out = append(out, r)
		}
	}
	return out
}

// Record returns the TLSA record of cert with the given usage, selector
// and matching type (RFC 6698 §2.1): Record(leaf, UsageDANEEE,
// SelectorSPKI, MatchSHA256) is the "3 1 1" record of a server's key,
// which stays the same across renewals that keep the key (RFC 7671
// §8.1).
func Record(cert *x509.Certificate, usage, selector, matchingType uint8) dns.TLSA {
	return dns.TLSA{Usage: usage, Selector: selector, MatchingType: matchingType, Data: associated(cert, selector, matchingType)}
}

// associated is the association data of cert for a selector and a
// matching type (RFC 6698 §2.1.2, §2.1.3); nil for unknown ones.
func associated(cert *x509.Certificate, selector, matchingType uint8) []byte {
	var content []byte
	switch selector {
	case SelectorCert:
		content = cert.Raw
	case SelectorSPKI:
		content = cert.RawSubjectPublicKeyInfo
	default:
		return nil
	}
	switch matchingType {
	case MatchFull:
		return content
	case MatchSHA256:
		h := sha256.Sum256(content)
		return h[:]
	case MatchSHA512:
		h := sha512.Sum512(content)
		return h[:]
	}
	return nil
}

// matches reports whether r names cert.
func matches(r dns.TLSA, cert *x509.Certificate) bool {
	data := associated(cert, r.Selector, r.MatchingType)
	return data != nil && bytes.Equal(data, r.Data)
}
