package mtasts

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/net/idna"
)

// Mode is what a policy asks of senders (RFC 8461 §5).
type Mode string

// The modes of §5.
const (
	// Enforce: deliver only to MX hosts the policy lists, over STARTTLS
	// with a certificate valid for the MX host name.
	Enforce Mode = "enforce"
	// Testing: deliver as without a policy, and report failures (RFC
	// 8460).
	Testing Mode = "testing"
	// None: no policy in force (a domain leaving MTA-STS, §8.3).
	None Mode = "none"
)

// MaxMaxAge is the longest max_age a policy may have (§3.2): a year.
const MaxMaxAge = 31557600 * time.Second

// Policy is an MTA-STS policy (§3.2).
type Policy struct {
	Mode Mode
	// MaxAge is how long the policy may be used after it was fetched;
	// whole seconds, 0 to MaxMaxAge.
	MaxAge time.Duration
	// MX are the patterns of the MX hosts that may receive mail for the
	// domain (§4.1): host names in lower-case A-labels, or "*." and a
	// domain, which matches the names one label below it.
	MX []string
}

// errInvalid is wrapped by the errors of a policy that cannot be used: a
// syntax error (ParsePolicy), a media type other than text/plain, a body
// over the size limit. FailureType says sts-policy-invalid (RFC 8460
// §4.3.2).
var errInvalid = errors.New("invalid MTA-STS policy")

func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errInvalid, fmt.Sprintf(format, args...))
}

// ParsePolicy parses a policy as it is served (§3.2): lines of "key:
// value" ending in CRLF or LF (the last one's optional), the version
// first and "STSv1", a mode, a max_age, at least one mx unless the mode
// is none. Other keys are ignored, as are repeats of a key other than mx
// (the first counts); names and values are case-sensitive. The package
// documentation lists the choices made where the RFC leaves room.
// FailureType of its errors is sts-policy-invalid.
func ParsePolicy(text string) (*Policy, error) {
	if !utf8.ValidString(text) {
		return nil, invalidf("not UTF-8")
	}
	lines, err := policyLines(text)
	if err != nil {
		return nil, err
	}
	p := &Policy{}
	seen := map[string]bool{}
	for i, line := range lines {
		key, value, err := policyField(line)
		if err != nil {
			return nil, invalidf("line %d: %v", i+1, err)
		}
		if i == 0 && key != "version" {
			return nil, invalidf("line 1: %q: the version comes first", line)
		}
		if key == "mx" {
			pat, err := parseMXPattern(value)
			if err != nil {
				return nil, invalidf("line %d: mx: %v", i+1, err)
			}
			p.MX = append(p.MX, pat)
			continue
		}
		if seen[key] {
			continue // §3.2: "all entries except for the first SHOULD be ignored"
		}
		seen[key] = true
		switch key {
		case "version":
			if value != "STSv1" {
				return nil, invalidf("line %d: version %q, want STSv1", i+1, value)
			}
		case "mode":
			switch m := Mode(value); m {
			case Enforce, Testing, None:
				p.Mode = m
			default:
				return nil, invalidf("line %d: mode %q, want enforce, testing or none", i+1, value)
			}
		case "max_age":
			d, err := parseMaxAge(value)
			if err != nil {
				return nil, invalidf("line %d: max_age: %v", i+1, err)
			}
			p.MaxAge = d
		}
	}
	switch {
	case !seen["mode"]:
		return nil, invalidf("no mode")
	case !seen["max_age"]:
		return nil, invalidf("no max_age")
	case len(p.MX) == 0 && p.Mode != None:
		return nil, invalidf("no mx in mode %s", p.Mode)
	}
	return p, nil
}

// policyLines splits a policy into its lines: sts-policy-term is LF or
// CRLF, optional after the last field; no line is empty.
func policyLines(text string) ([]string, error) {
	if text == "" {
		return nil, invalidf("empty")
	}
	body, ended := strings.CutSuffix(text, "\n")
	lines := strings.Split(body, "\n")
	for i, l := range lines {
		if i < len(lines)-1 || ended {
			l = strings.TrimSuffix(l, "\r") // CRLF; a CR alone ends nothing
		}
		if l == "" {
			return nil, invalidf("line %d: empty", i+1)
		}
		lines[i] = l
	}
	return lines, nil
}

// Lines returns the lines of a policy's text without their ends, as a
// TLS report gives them (RFC 8460 §4.4, policy-string).
func Lines(text string) []string {
	text = strings.TrimSuffix(text, "\n")
	if text == "" {
		return nil
	}
	lines := strings.Split(text, "\n")
	for i, l := range lines {
		lines[i] = strings.TrimSuffix(l, "\r")
	}
	return lines
}

// policyField splits one line into its key and value:
//
//	sts-policy-field     = sts-policy-ext-name ":" *WSP sts-policy-ext-value *WSP
//	sts-policy-ext-name  = (ALPHA / DIGIT) *31(ALPHA / DIGIT / "_" / "-" / ".")
//	sts-policy-ext-value = sts-policy-vchar [*(%x20 / sts-policy-vchar) sts-policy-vchar]
//	sts-policy-vchar     = %x21-7E / UTF8-2 / UTF8-3 / UTF8-4
//
// which every field of §3.2 is a case of.
func policyField(line string) (key, value string, err error) {
	key, value, ok := strings.Cut(line, ":")
	if !ok {
		return "", "", fmt.Errorf("%q: no colon", line)
	}
	if !validExtName(key) {
		return "", "", fmt.Errorf("%q: not a field name", key)
	}
	value = strings.TrimRight(strings.TrimLeft(value, " \t"), " \t")
	if value == "" {
		return "", "", fmt.Errorf("%s: empty value", key)
	}
	for _, r := range value {
		if r < 0x20 || r == 0x7f {
			return "", "", fmt.Errorf("%s: control character %q in the value", key, r)
		}
	}
	return key, value, nil
}

// validExtName reports whether s is an sts-policy-ext-name, which is
// also the grammar of sts-ext-name in the TXT record (§3.1).
func validExtName(s string) bool {
	if s == "" || len(s) > 32 || !isAlnum(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if c := s[i]; !isAlnum(c) && c != '_' && c != '-' && c != '.' {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// parseMaxAge parses sts-policy-max-age-value, 1*10(DIGIT), at most
// 31557600.
func parseMaxAge(s string) (time.Duration, error) {
	if len(s) > 10 {
		return 0, fmt.Errorf("%q: over 10 digits", s)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("%q: not a number", s)
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, err
	}
	if d := time.Duration(n) * time.Second; d <= MaxMaxAge {
		return d, nil
	}
	return 0, fmt.Errorf("%d: over 31557600", n)
}

// parseMXPattern parses sts-policy-mx-value, ["*."] Domain (RFC 5321
// §4.1.2), in A-labels (§3.2: "the mx value MUST specify the
// Punycode-encoded A-label"), and returns it in lower case.
func parseMXPattern(s string) (string, error) {
	name, wild := strings.CutPrefix(s, "*.")
	if err := checkHostname(name); err != nil {
		return "", err
	}
	name = strings.ToLower(name)
	if wild {
		return "*." + name, nil
	}
	return name, nil
}

// checkHostname checks that s is a Domain of RFC 5321 §4.1.2 (letters,
// digits and inner hyphens in labels of 1 to 63 octets, dot-separated,
// no final dot) that fits the DNS (253 octets).
func checkHostname(s string) error {
	if s == "" {
		return errors.New("empty host name")
	}
	if len(s) > 253 {
		return fmt.Errorf("%.20q…: over 253 octets", s)
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 {
			return fmt.Errorf("%q: a label is empty or over 63 octets", s)
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("%q: a label begins or ends with a hyphen", s)
		}
		for i := 0; i < len(label); i++ {
			if c := label[i]; !isAlnum(c) && c != '-' {
				if c >= 0x80 {
					return fmt.Errorf("%q: not in A-labels", s)
				}
				return fmt.Errorf("%q: %q in a host name", s, c)
			}
		}
	}
	return nil
}

// normalizeDomain returns domain in lower-case A-labels without a final
// dot, or an error for what cannot be a domain name. The result is safe
// as a file name.
func normalizeDomain(domain string) (string, error) {
	d := strings.TrimSuffix(strings.ToLower(domain), ".")
	a, err := idna.Lookup.ToASCII(d)
	if err != nil {
		return "", fmt.Errorf("domain %q: %w", domain, err)
	}
	if err := checkHostname(a); err != nil {
		return "", fmt.Errorf("domain %q: %w", domain, err)
	}
	return a, nil
}

// Match reports whether the MX host name host is one the policy lists
// (§4.1): equal to a pattern, or one label followed by the domain of a
// "*." pattern ("*.example.com" matches "mx.example.com", not
// "example.com" nor "a.mx.example.com"). Case and a final dot do not
// matter; a name in U-labels is taken in A-labels.
func (p Policy) Match(host string) bool {
	h, err := normalizeDomain(host)
	if err != nil {
		return false
	}
	for _, pat := range p.MX {
		if parent, wild := strings.CutPrefix(pat, "*."); wild {
			if _, rest, ok := strings.Cut(h, "."); ok && rest == parent {
				return true
			}
		} else if h == pat {
			return true
		}
	}
	return false
}

// NewPolicy returns the policy of our own domains (issue 13, "Publish
// our own"): mode, max_age (whole seconds), our MX host names. It is
// checked as ParsePolicy checks a policy it fetches.
func NewPolicy(mode Mode, maxAge time.Duration, mx ...string) (Policy, error) {
	p := Policy{Mode: mode, MaxAge: maxAge.Truncate(time.Second)}
	for _, h := range mx {
		pat, err := parseMXPattern(strings.TrimSuffix(h, "."))
		if err != nil {
			return Policy{}, invalidf("mx: %v", err)
		}
		p.MX = append(p.MX, pat)
	}
	q, err := ParsePolicy(p.String())
	if err != nil {
		return Policy{}, err
	}
	return *q, nil
}

// String is the policy as it is served (§3.2), in the RFC's order:
// version, mode, mx, max_age, each line ending in CRLF.
func (p Policy) String() string {
	var b strings.Builder
	b.WriteString("version: STSv1\r\n")
	b.WriteString("mode: " + string(p.Mode) + "\r\n")
	for _, mx := range p.MX {
		b.WriteString("mx: " + mx + "\r\n")
	}
	fmt.Fprintf(&b, "max_age: %d\r\n", int64(p.MaxAge/time.Second))
	return b.String()
}

// ID is the id to publish with the policy in the TXT record (§3.1,
// 1*32(ALPHA / DIGIT)): the first 128 bits of the SHA-256 of its text,
// in hex, so that it changes whenever the policy does.
func (p Policy) ID() string {
	sum := sha256.Sum256([]byte(p.String()))
	return hex.EncodeToString(sum[:16])
}
