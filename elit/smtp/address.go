// Package smtp holds SMTP wire types shared by Elit's server and client:
// addresses (RFC 5321 §4.1.2, with RFC 6531 UTF-8). It does no I/O.
package smtp

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"unicode/utf8"
)

// Limits of RFC 5321 §4.5.3.1.
const (
	MaxLocalPart = 64
	MaxDomain    = 255
	MaxPath      = 256 // including the angle brackets
)

// Address is a mailbox address local@domain, as in MAIL FROM and RCPT TO.
type Address struct {
	Local  string // as written, quoted if it was (RFC 5321 Local-part)
	Domain string // lower case; an address literal keeps its brackets
}

func (a Address) String() string { return a.Local + "@" + a.Domain }

// Canonical returns the form used to compare addresses: the local part
// unquoted where quoting is not needed and folded to lower case (RFC 5321
// lets a server treat local parts case-insensitively, and every mail server
// users meet does), at the lower-case domain.
func (a Address) Canonical() string {
	return strings.ToLower(canonicalLocal(a.Local)) + "@" + a.Domain
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

// ParseAddress parses local@domain (RFC 5321 Mailbox), without angle brackets.
func ParseAddress(s string) (Address, error) {
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
// U-labels with RFC 6531) and returns it in lower case, without a final dot.
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
	return strings.ToLower(d), nil
}

func parseAddressLiteral(d string) (string, error) {
	if len(d) < 3 || d[0] != '[' || d[len(d)-1] != ']' {
		return "", errors.New("not an address literal")
	}
	inner := d[1 : len(d)-1]
	if v6, ok := strings.CutPrefix(inner, "IPv6:"); ok {
		if ip, err := netip.ParseAddr(v6); err == nil && ip.Is6() && !ip.Is4In6() && ip.Zone() == "" {
			return "[IPv6:" + ip.String() + "]", nil
		}
	} else if ip, err := netip.ParseAddr(inner); err == nil && ip.Is4() {
		return "[" + ip.String() + "]", nil
	}
	return "", fmt.Errorf("bad address literal %q", d)
}
