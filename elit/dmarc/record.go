package dmarc

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// Policy is what a domain asks receivers to do with mail that fails
// (RFC 7489 §6.3 p=, sp=).
type Policy string

// Policies (§6.3).
const (
	PolicyNone Policy = "none"
	Quarantine Policy = "quarantine"
	Reject     Policy = "reject"
)

// Alignment is an identifier alignment mode (§3.1, §6.3 adkim=, aspf=).
type Alignment string

// Alignment modes.
const (
	Relaxed Alignment = "r" // same organizational domain (§3.1.1)
	Strict  Alignment = "s" // same domain
)

// Record is a DMARC record (§6.3), with the defaults of absent tags.
type Record struct {
	Policy Policy // p=
	// SubdomainPolicy is sp=, "" when absent: Policy applies.
	SubdomainPolicy Policy
	ADKIM, ASPF     Alignment // adkim=, aspf=
	Percent         int       // pct=
	RUA, RUF        []URI     // rua=, ruf=
	FailureOptions  []string  // fo=
	ReportFormats   []string  // rf=
	Interval        uint32    // ri=, in seconds
	// NoPolicy says p= was absent or invalid (or sp= invalid) and the
	// record is taken as p=none because rua= names a valid URI
	// (§6.6.3).
	NoPolicy bool
}

// URI is a DMARC URI (§6.2): where reports go, and the largest report
// wanted (0: no limit).
type URI struct {
	URI     string
	MaxSize uint64
}

// errNoVersion marks a TXT record that is no DMARC record: discarded
// (§6.6.3 step 2).
var errNoVersion = errors.New("dmarc: no v=DMARC1 first")

// hasVersion reports whether txt begins with the tag v=DMARC1 (§6.4,
// "DMARC1" in upper case as its ABNF has it).
func hasVersion(txt string) bool {
	first, _, _ := strings.Cut(txt, ";")
	tag, value, ok := strings.Cut(first, "=")
	return ok && trimWSP(tag) == "v" && trimWSP(value) == "DMARC1"
}

// trimWSP trims spaces and tabs (*WSP of §6.4).
func trimWSP(s string) string { return strings.Trim(s, " \t") }

// Parse parses a DMARC record (§6.3, §6.4): v=DMARC1 first, tags
// separated by ";" (one may end the record), each once; unknown tags
// ignored; tag names and keyword values in any case. A record that
// breaks the grammar is no policy: an error. A p= absent or invalid (or
// sp= invalid) is taken as p=none when rua= names a URI, as §6.6.3 says,
// with NoPolicy set.
func Parse(txt string) (*Record, error) {
	if !hasVersion(txt) {
		return nil, errNoVersion
	}
	rec := &Record{ADKIM: Relaxed, ASPF: Relaxed, Percent: 100, FailureOptions: []string{"0"}, ReportFormats: []string{"afrf"}, Interval: 86400}
	parts := strings.Split(txt, ";")
	if len(parts) > 1 && trimWSP(parts[len(parts)-1]) == "" {
		parts = parts[:len(parts)-1]
	}
	seen := map[string]bool{}
	var policyErr error
	havePolicy := false
	for _, part := range parts[1:] {
		tag, value, ok := strings.Cut(part, "=")
		tag, value = strings.ToLower(trimWSP(tag)), trimWSP(value)
		if !ok || !isTagName(tag) {
			return nil, fmt.Errorf("dmarc: bad tag-spec %q", part)
		}
		if seen[tag] {
			return nil, fmt.Errorf("dmarc: tag %s twice", tag)
		}
		seen[tag] = true
		var err error
		switch tag {
		case "v":
			err = errors.New("v= not first")
		case "p":
			rec.Policy, err = parsePolicy(value)
			if err != nil {
				policyErr = fmt.Errorf("p=%s: %w", value, err)
			}
			havePolicy = err == nil
			err = nil
		case "sp":
			rec.SubdomainPolicy, err = parsePolicy(value)
			if err != nil {
				policyErr = fmt.Errorf("sp=%s: %w", value, err)
			}
			err = nil
		case "adkim":
			rec.ADKIM, err = parseAlignment(value)
		case "aspf":
			rec.ASPF, err = parseAlignment(value)
		case "pct":
			rec.Percent, err = parseNumber(value, 100)
		case "ri":
			var n int
			n, err = parseNumber(value, 1<<32-1)
			rec.Interval = uint32(n)
		case "rua":
			rec.RUA, err = parseURIs(value)
		case "ruf":
			rec.RUF, err = parseURIs(value)
		case "fo":
			rec.FailureOptions, err = parseList(value, func(s string) bool { return s == "0" || s == "1" || s == "d" || s == "s" })
		case "rf":
			rec.ReportFormats, err = parseList(value, isKeyword)
		default:
			if strings.ContainsAny(value, "\r\n") {
				err = errors.New("line break in a value")
			}
		}
		if err != nil {
			return nil, fmt.Errorf("dmarc: %s=%s: %w", tag, value, err)
		}
	}
	if !havePolicy && policyErr == nil {
		policyErr = errors.New("no p=")
	}
	if policyErr != nil {
		if len(rec.RUA) == 0 {
			return nil, fmt.Errorf("dmarc: %w", policyErr)
		}
		// §6.6.3 step 6: act as if the record were "v=DMARC1; p=none".
		rec.Policy, rec.SubdomainPolicy, rec.NoPolicy = PolicyNone, "", true
	}
	return rec, nil
}

// isTagName reports whether s is a tag-name: ALPHA *ALNUMPUNC (RFC 6376
// §3.2, whose tag-list DMARC uses).
func isTagName(s string) bool {
	if s == "" || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for i := 1; i < len(s); i++ {
		if c := s[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

func isKeyword(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

func parsePolicy(s string) (Policy, error) {
	switch p := Policy(strings.ToLower(s)); p {
	case PolicyNone, Quarantine, Reject:
		return p, nil
	}
	return "", errors.New("not none, quarantine or reject")
}

func parseAlignment(s string) (Alignment, error) {
	switch a := Alignment(strings.ToLower(s)); a {
	case Relaxed, Strict:
		return a, nil
	}
	return "", errors.New("not r or s")
}

// parseNumber parses 1*DIGIT no greater than max.
func parseNumber(s string, max int) (int, error) {
	if s == "" || strings.Trim(s, "0123456789") != "" {
		return 0, errors.New("not a number")
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n > uint64(max) {
		return 0, fmt.Errorf("over %d", max)
	}
	return int(n), nil
}

// parseList parses a colon-separated list (§6.4 fo=, rf=).
func parseList(s string, valid func(string) bool) ([]string, error) {
	var out []string
	for item := range strings.SplitSeq(s, ":") {
		item = strings.ToLower(trimWSP(item))
		if !valid(item) {
			return nil, fmt.Errorf("bad item %q", item)
		}
		out = append(out, item)
	}
	return out, nil
}

// parseURIs parses dmarc-uri *(*WSP "," *WSP dmarc-uri) (§6.4): a URI
// (RFC 3986) with a scheme, then "!" and a size with an optional unit.
func parseURIs(s string) ([]URI, error) {
	var out []URI
	for item := range strings.SplitSeq(s, ",") {
		item = trimWSP(item)
		u := URI{URI: item}
		if i := strings.LastIndexByte(item, '!'); i >= 0 {
			u.URI = item[:i]
			size := item[i+1:]
			mult := uint64(1)
			if n := len(size); n > 0 {
				switch size[n-1] {
				case 'k', 'K':
					mult = 1 << 10
				case 'm', 'M':
					mult = 1 << 20
				case 'g', 'G':
					mult = 1 << 30
				case 't', 'T':
					mult = 1 << 40
				}
				if mult > 1 {
					size = size[:n-1]
				}
			}
			n, err := parseNumber(size, 1<<24)
			if err != nil {
				return nil, fmt.Errorf("size of %q: %w", item, err)
			}
			u.MaxSize = uint64(n) * mult
		}
		parsed, err := url.Parse(u.URI)
		if err != nil || parsed.Scheme == "" || strings.ContainsAny(u.URI, " \t\r\n,!") {
			return nil, fmt.Errorf("bad URI %q", u.URI)
		}
		out = append(out, u)
	}
	return out, nil
}
