package spf

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
)

// record is a parsed SPF record (RFC 7208 §4.5, §12 ABNF).
type record struct {
	directives []directive
	redirect   macroString // nil without redirect= (§6.1)
	exp        macroString // nil without exp= (§6.2)
}

// directive is a qualifier and a mechanism (§4.6.2, §5).
type directive struct {
	term   string  // as written, for Result.Mechanism
	result Verdict // of the qualifier
	mech   string  // all, include, a, mx, ptr, ip4, ip6, exists
	domain macroString
	prefix netip.Prefix // ip4, ip6
	cidr4  int          // a, mx: dual-cidr-length (§5.6)
	cidr6  int
}

// errSyntax marks a record that breaks the grammar: permerror (§4.6).
var errSyntax = errors.New("spf: syntax error")

func syntaxError(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{errSyntax}, args...)...)
}

// isSPF reports whether a TXT record is an SPF record: "v=spf1" followed
// by a space or its end (§4.5, case-insensitive as ABNF strings are).
func isSPF(txt string) bool {
	return len(txt) >= 6 && strings.EqualFold(txt[:6], "v=spf1") && (len(txt) == 6 || txt[6] == ' ')
}

// modifierName matches the name of a modifier and its "=" (§4.6.1: the
// "=" before any ":" or "/" tells a modifier from a mechanism).
var modifierName = regexp.MustCompile(`^([A-Za-z][A-Za-z0-9._-]*)=`)

// dualCIDR splits a dual-cidr-length off the end of an a or mx argument
// (§5.3, §5.4): the shortest text before it that leaves a valid one.
// Lengths have no leading zero, as ip4-network's octets (§5.6).
var dualCIDR = regexp.MustCompile(`^(.*?)(?:/(0|[1-9][0-9]*))?(?://(0|[1-9][0-9]*))?$`)

// parseRecord parses a whole record before any of it is evaluated: a
// syntax error anywhere is a permerror, even after a match (§4.6).
func parseRecord(txt string) (*record, error) {
	if !isSPF(txt) {
		return nil, syntaxError("no v=spf1")
	}
	for i := 0; i < len(txt); i++ {
		// Terms are separated by spaces only (§4.6.1) and are ASCII
		// (§3.1, §4.5).
		if c := txt[i]; c < 0x20 || c > 0x7e {
			return nil, syntaxError("byte %#02x in the record", c)
		}
	}
	rec := &record{}
	var haveRedirect, haveExp bool
	for _, term := range strings.Split(txt[6:], " ") {
		if term == "" {
			continue
		}
		if m := modifierName.FindStringSubmatch(term); m != nil {
			value := term[len(m[0]):]
			switch strings.ToLower(m[1]) {
			case "redirect":
				if haveRedirect {
					return nil, syntaxError("two redirect= (§6)")
				}
				ds, err := parseDomainSpec(value)
				if err != nil {
					return nil, fmt.Errorf("%s: %w", term, err)
				}
				rec.redirect, haveRedirect = ds, true
			case "exp":
				if haveExp {
					return nil, syntaxError("two exp= (§6)")
				}
				ds, err := parseDomainSpec(value)
				if err != nil {
					return nil, fmt.Errorf("%s: %w", term, err)
				}
				rec.exp, haveExp = ds, true
			default: // unknown-modifier = name "=" macro-string (§6)
				if _, err := parseMacroString(value, false); err != nil {
					return nil, fmt.Errorf("%s: %w", term, err)
				}
			}
			continue
		}
		d, err := parseDirective(term)
		if err != nil {
			return nil, err
		}
		rec.directives = append(rec.directives, d)
	}
	return rec, nil
}

// parseDirective parses [qualifier] mechanism (§4.6.2, §5).
func parseDirective(term string) (directive, error) {
	d := directive{term: term, result: Pass}
	rest := term
	switch rest[0] {
	case '+', '-', '~', '?':
		d.result = map[byte]Verdict{'+': Pass, '-': Fail, '~': SoftFail, '?': Neutral}[rest[0]]
		rest = rest[1:]
	}
	n := strings.IndexAny(rest, ":/")
	if n < 0 {
		n = len(rest)
	}
	d.mech, rest = strings.ToLower(rest[:n]), rest[n:]
	var err error
	switch d.mech {
	case "all": // §5.1
		if rest != "" {
			return d, syntaxError("%q: all takes no argument", term)
		}
	case "include", "exists": // §5.2, §5.7: ":" domain-spec
		if !strings.HasPrefix(rest, ":") {
			return d, syntaxError("%q: %s needs a domain", term, d.mech)
		}
		d.domain, err = parseDomainSpec(rest[1:])
	case "ptr": // §5.5: [":" domain-spec]
		if rest != "" {
			if !strings.HasPrefix(rest, ":") {
				return d, syntaxError("%q: ptr takes no CIDR length", term)
			}
			d.domain, err = parseDomainSpec(rest[1:])
		}
	case "a", "mx": // §5.3, §5.4: [":" domain-spec] [dual-cidr-length]
		m := dualCIDR.FindStringSubmatch(rest)
		d.cidr4, d.cidr6 = 32, 128
		if m[2] != "" {
			d.cidr4, _ = strconv.Atoi(m[2])
		}
		if m[3] != "" {
			d.cidr6, _ = strconv.Atoi(m[3])
		}
		if d.cidr4 > 32 || d.cidr6 > 128 {
			return d, syntaxError("%q: CIDR length out of range", term)
		}
		switch {
		case m[1] == "":
		case strings.HasPrefix(m[1], ":"):
			d.domain, err = parseDomainSpec(m[1][1:])
		default:
			return d, syntaxError("%q: bad %s", term, d.mech)
		}
	case "ip4", "ip6": // §5.6
		if !strings.HasPrefix(rest, ":") {
			return d, syntaxError("%q: %s needs a network", term, d.mech)
		}
		d.prefix, err = parseNetwork(rest[1:], d.mech == "ip4")
		if err != nil {
			return d, fmt.Errorf("%q: %w", term, err)
		}
	default:
		return d, syntaxError("unknown mechanism %q", term)
	}
	if err != nil {
		return d, fmt.Errorf("%q: %w", term, err)
	}
	return d, nil
}

// parseNetwork parses ip4-network [ip4-cidr-length] or ip6-network
// [ip6-cidr-length] (§5.6): a whole address, no leading zeros in a
// length, at most 32 or 128.
func parseNetwork(s string, v4 bool) (netip.Prefix, error) {
	addr, length := s, ""
	if i := strings.LastIndexByte(s, '/'); i >= 0 {
		addr, length = s[:i], s[i+1:]
	}
	ip, err := netip.ParseAddr(addr)
	if err != nil || ip.Zone() != "" || ip.Is4() != v4 {
		return netip.Prefix{}, syntaxError("bad address %q", addr)
	}
	bits := ip.BitLen()
	if length != "" {
		if length != "0" && (length[0] < '1' || length[0] > '9') {
			return netip.Prefix{}, syntaxError("bad CIDR length %q", length)
		}
		n, err := strconv.Atoi(length)
		if err != nil || n > ip.BitLen() {
			return netip.Prefix{}, syntaxError("bad CIDR length %q", length)
		}
		bits = n
	}
	return netip.PrefixFrom(ip, bits).Masked(), nil
}

// parseDomainSpec parses domain-spec = macro-string domain-end (§7.1):
// not empty, and ending in a macro or in "." toplabel ["."].
func parseDomainSpec(s string) (macroString, error) {
	ms, err := parseMacroString(s, false)
	if err != nil {
		return nil, err
	}
	if len(ms) == 0 {
		return nil, syntaxError("empty domain-spec")
	}
	last := ms[len(ms)-1]
	if last.letter != 0 || last.escape {
		return ms, nil
	}
	tail := strings.TrimSuffix(last.literal, ".")
	i := strings.LastIndexByte(tail, '.')
	if i < 0 || !isTopLabel(tail[i+1:]) {
		return nil, syntaxError("domain-spec %q does not end in a top label", s)
	}
	return ms, nil
}

// isTopLabel reports whether s is a toplabel (§7.1): letters and digits
// with a letter, or letters, digits and inner hyphens with a hyphen.
func isTopLabel(s string) bool {
	if s == "" {
		return false
	}
	alnum := func(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
	letter, hyphen := false, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '-':
			hyphen = true
		case alnum(c):
			letter = letter || c > '9'
		default:
			return false
		}
	}
	if hyphen {
		return alnum(s[0]) && alnum(s[len(s)-1])
	}
	return letter
}
