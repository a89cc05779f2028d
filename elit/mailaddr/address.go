// Package mailaddr is mail addresses as SMTP has them (RFC 5321 §4.1.2,
// with RFC 6531 UTF-8): parsing, checking, and the canonical form in which
// two addresses or domains compare (IDNA A-labels, RFC 5890). It does no
// I/O.
package mailaddr

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/idna"
)

// Limits of RFC 5321 §4.5.3.1.
const (
	MaxLocalPart = 64
	MaxDomain    = 255
	MaxPath      = 256 // including the angle brackets
)

// Address is a mailbox address local@domain, as in MAIL FROM and RCPT TO.
type Address struct {
	Local string // as written, quoted if it was (RFC 5321 Local-part)
	// Domain is as written in lower case (U-labels stay U-labels: the form
	// to show, and to send with SMTPUTF8); an address literal keeps its
	// brackets. CanonicalDomain gives the form to compare.
	Domain string
}

func (a Address) String() string { return a.Local + "@" + a.Domain }

// Canonical returns the form used to compare addresses: the local part
// unquoted where quoting is not needed and folded to lower case (RFC 5321
// lets a server treat local parts case-insensitively, and every mail server
// users meet does), at the canonical domain (see CanonicalDomain), so that
// din@bücher.example and din@XN--BCHER-KVA.example are one address.
func (a Address) Canonical() string {
	return strings.ToLower(canonicalLocal(a.Local)) + "@" + canonicalDomain(a.Domain)
}

func canonicalLocal(l string) string {
	if len(l) >= 2 && l[0] == '"' {
		inner := unquote(l[1 : len(l)-1])
		if isDotString(inner) {
			return inner
		}
	}
	return l
}

func unquote(q string) string {
	var b strings.Builder
	for i := 0; i < len(q); i++ {
		if q[i] == '\\' && i+1 < len(q) {
			i++
		}
		b.WriteByte(q[i])
	}
	return b.String()
}

// Parse parses local@domain (RFC 5321 Mailbox), without angle brackets.
func Parse(s string) (Address, error) {
	if len(s) > MaxPath-2 {
		return Address{}, fmt.Errorf("address longer than %d bytes", MaxPath-2)
	}
	at := strings.LastIndexByte(s, '@')
	if at < 0 {
		return Address{}, errors.New("address has no @domain")
	}
	local, domain := s[:at], s[at+1:]
	if err := CheckLocalPart(local); err != nil {
		return Address{}, err
	}
	d, err := ParseDomain(domain)
	if err != nil {
		// An address literal, [192.0.2.1] or [IPv6:2001:db8::1] (RFC 5321 §4.1.3).
		lit, lerr := parseAddressLiteral(domain)
		if lerr != nil {
			return Address{}, err
		}
		d = lit
	}
	return Address{Local: local, Domain: d}, nil
}

// CheckLocalPart checks an RFC 5321 Local-part: a Dot-string or a
// Quoted-string, with UTF-8 allowed (RFC 6531 §3.3).
func CheckLocalPart(l string) error {
	switch {
	case l == "":
		return errors.New("empty local part")
	case len(l) > MaxLocalPart:
		return fmt.Errorf("local part longer than %d bytes", MaxLocalPart)
	case !utf8.ValidString(l):
		return errors.New("local part is not valid UTF-8")
	case l[0] == '"':
		if !isQuotedString(l) {
			return fmt.Errorf("bad quoted local part %q", l)
		}
	case !isDotString(l):
		return fmt.Errorf("bad local part %q", l)
	}
	return nil
}

func isAtext(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' ||
		strings.ContainsRune("!#$%&'*+-/=?^_`{|}~", r) || r >= 0x80 && r != utf8.RuneError
}

func isDotString(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for _, r := range s {
		if r != '.' && !isAtext(r) {
			return false
		}
	}
	return true
}

func isQuotedString(s string) bool {
	if len(s) < 2 || s[0] != '"' || s[len(s)-1] != '"' {
		return false
	}
	for i := 1; i < len(s)-1; i++ {
		c := s[i]
		switch {
		case c == '\\':
			i++
			if i >= len(s)-1 || s[i] < 32 || s[i] > 126 {
				return false
			}
		case c == '"' || c < 32 || c == 127:
			return false
		}
	}
	return true
}

// ParseDomain checks a domain name (RFC 5321 Domain: LDH labels, or UTF-8
// U-labels with RFC 6531) and returns it as written in lower case, without
// a final dot. A name with U-labels or A-labels ("xn--") must be a valid
// internationalised domain name (IDNA2008, RFC 5891 §5.3–5.5, through the
// UTS #46 lookup processing), so that it has one A-label form to look up
// and to compare (see CanonicalDomain).
func ParseDomain(d string) (string, error) {
	d = strings.TrimSuffix(d, ".")
	if d == "" || len(d) > MaxDomain {
		return "", fmt.Errorf("bad domain %q", d)
	}
	if !utf8.ValidString(d) {
		return "", errors.New("domain is not valid UTF-8")
	}
	for _, label := range strings.Split(d, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return "", fmt.Errorf("bad domain %q", d)
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r >= 0x80) {
				return "", fmt.Errorf("bad domain %q", d)
			}
		}
	}
	d = strings.ToLower(d)
	if needsIDNA(d) {
		if _, err := toASCII(d); err != nil {
			return "", fmt.Errorf("bad domain %q: %w", d, err)
		}
	}
	return d, nil
}

// CanonicalDomain returns the form of a domain name used to compare
// domains and to look them up in the DNS: lower case, every U-label
// replaced by its A-label (RFC 5890 §2.3.2.1), so that bücher.example and
// xn--bcher-kva.example are one domain. The conversion is the lookup
// processing of UTS #46 (nontransitional: "ß" stays "ß", as IDNA2008
// wants). An address literal ([192.0.2.1], [IPv6:2001:db8::1]) is returned
// in the form Parse gives it.
func CanonicalDomain(d string) (string, error) {
	if strings.HasPrefix(d, "[") {
		return parseAddressLiteral(d)
	}
	p, err := ParseDomain(d)
	if err != nil {
		return "", err
	}
	return canonicalDomain(p), nil
}

// canonicalDomain converts a domain that ParseDomain accepted (or an
// address literal, left alone) to its A-label form.
func canonicalDomain(d string) string {
	if strings.HasPrefix(d, "[") {
		return d
	}
	if !needsIDNA(d) {
		return strings.ToLower(d)
	}
	a, err := toASCII(d)
	if err != nil {
		return strings.ToLower(d) // not from ParseDomain: compared as it is
	}
	return a
}

// needsIDNA reports whether d has a label that is not plain LDH ASCII: a
// U-label, or an A-label to check. Plain ASCII names skip IDNA, whose
// hyphen rules would refuse some that RFC 5321 allows ("r3--a.example").
func needsIDNA(d string) bool {
	for _, label := range strings.Split(d, ".") {
		if len(label) >= 4 && strings.EqualFold(label[:4], "xn--") {
			return true
		}
		for i := 0; i < len(label); i++ {
			if label[i] >= 0x80 {
				return true
			}
		}
	}
	return false
}

// toASCII converts a domain name to A-labels with the UTS #46 lookup
// profile (RFC 5891 §5) and checks that the result is a host name the DNS
// can hold: LDH labels of at most 63 octets, MaxDomain in all.
func toASCII(d string) (string, error) {
	a, err := idna.Lookup.ToASCII(d)
	if err != nil {
		return "", err
	}
	if a == "" || len(a) > MaxDomain {
		return "", errors.New("no valid A-label form")
	}
	for _, label := range strings.Split(a, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return "", fmt.Errorf("the A-label form %q is not a host name", a)
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return "", fmt.Errorf("the A-label form %q is not a host name", a)
			}
		}
	}
	return a, nil
}

// parseAddressLiteral parses an address literal (RFC 5321 §4.1.3) and
// returns it in one form: IPv4 dotted, or "IPv6:" and the RFC 5952 text.
func parseAddressLiteral(d string) (string, error) {
	if len(d) < 3 || d[0] != '[' || d[len(d)-1] != ']' {
		return "", errors.New("not an address literal")
	}
	inner := d[1 : len(d)-1]
	if len(inner) > 5 && strings.EqualFold(inner[:5], "IPv6:") { // ABNF strings ignore case
		if ip, err := netip.ParseAddr(inner[5:]); err == nil && ip.Is6() && !ip.Is4In6() && ip.Zone() == "" {
			return "[IPv6:" + ip.String() + "]", nil
		}
	} else if ip, err := netip.ParseAddr(inner); err == nil && ip.Is4() {
		return "[" + ip.String() + "]", nil
	}
	return "", fmt.Errorf("bad address literal %q", d)
}
