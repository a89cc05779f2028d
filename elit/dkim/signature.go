package dkim

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Signing algorithms (the a= tag).
const (
	RSASHA256     = "rsa-sha256"     // RFC 6376 §3.3.2
	Ed25519SHA256 = "ed25519-sha256" // RFC 8463 §3
	RSASHA1       = "rsa-sha1"       // RFC 6376 §3.3.1; never valid (RFC 8301 §3.1)
)

// Signature is a parsed DKIM-Signature field (RFC 6376 §3.5), or an
// ARC-Message-Signature (RFC 8617 §4.1.2), which is one with i= as the
// ARC instance and no v=.
type Signature struct {
	Version     string   // v=; "" for an ARC-Message-Signature
	Instance    int      // ARC i=; 0 for DKIM
	Algorithm   string   // a=: RSASHA256, Ed25519SHA256 or RSASHA1
	B           []byte   // b=, decoded
	BString     string   // b= as written, whitespace removed (for header.b, RFC 6008)
	BodyHash    []byte   // bh=, decoded
	HeaderCanon Canon    // c=, header part
	BodyCanon   Canon    // c=, body part
	Domain      string   // d=
	Headers     []string // h=, as written
	Identity    string   // i= of DKIM (the AUID); "@" + d= when absent
	Length      int64    // l=; -1 when absent
	Selector    string   // s=
	Timestamp   int64    // t=; -1 when absent
	Expiration  int64    // x=; -1 when absent
	Tags        TagList  // every tag, unknown ones included
}

// errSyntax marks errors of the signature's syntax: its result is neutral
// (RFC 8601 §2.7.1: "contained syntax errors").
var errSyntax = errors.New("syntax error")

func syntaxErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errSyntax, fmt.Sprintf(format, args...))
}

// ParseSignature parses the value of a DKIM-Signature field (RFC 6376
// §3.5): every tag's syntax, the required tags (v=1, a, b, bh, d, h, s),
// known algorithm and canonicalization, q= including dns/txt. What needs
// more than the field (i= within d=, From signed, times) is checked by
// Verify.
func ParseSignature(value []byte) (*Signature, error) {
	return parseSignature(value, false)
}

// ParseMessageSignature parses the value of an ARC-Message-Signature
// field (RFC 8617 §4.1.2): like ParseSignature but with i= the instance
// (1 to 50, required) and no v=; when c= is absent, relaxed/relaxed, the
// only canonicalization the rest of ARC uses (RFC 8617 §4.1.3) and what
// ARC signers write. Empty names in h= are skipped, as the ARC test
// suite wants (DKIM's grammar has none).
func ParseMessageSignature(value []byte) (*Signature, error) {
	return parseSignature(value, true)
}

func parseSignature(value []byte, arc bool) (*Signature, error) {
	tags, err := ParseTagList(string(value))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errSyntax, err)
	}
	s := &Signature{Tags: tags, Length: -1, Timestamp: -1, Expiration: -1,
		HeaderCanon: Simple, BodyCanon: Simple}
	if arc {
		s.HeaderCanon, s.BodyCanon = Relaxed, Relaxed
	}
	required := []string{"a", "b", "bh", "d", "h", "s"}
	if arc {
		required = append(required, "i")
	} else {
		required = append(required, "v")
	}
	for _, name := range required {
		if _, ok := tags.Get(name); !ok {
			return nil, syntaxErr("no %s= tag", name)
		}
	}
	for _, t := range tags {
		v := t.Value
		switch t.Name {
		case "v":
			if arc {
				continue // RFC 8617 §4.1.2: ignored, as unknown tags are
			}
			if v != "1" {
				return nil, syntaxErr("v=%s: unknown version", v)
			}
			s.Version = v
		case "a":
			switch v {
			case RSASHA256, Ed25519SHA256, RSASHA1:
				s.Algorithm = v
			default:
				return nil, syntaxErr("a=%s: unknown algorithm", v)
			}
		case "b":
			s.BString = removeWSP(v)
			if s.B, err = decodeBase64(s.BString); err != nil || len(s.B) == 0 {
				return nil, syntaxErr("b=: not base64")
			}
		case "bh":
			if s.BodyHash, err = decodeBase64(removeWSP(v)); err != nil || len(s.BodyHash) == 0 {
				return nil, syntaxErr("bh=: not base64")
			}
		case "c":
			if s.HeaderCanon, s.BodyCanon, err = ParseCanonicalization(v); err != nil {
				return nil, syntaxErr("c=%s: %v", v, err)
			}
		case "d":
			if !validDomain(v) {
				return nil, syntaxErr("d=%s: not a domain name", v)
			}
			s.Domain = v
		case "h":
			for _, name := range strings.Split(v, ":") {
				name = strings.Trim(name, " \t\r\n")
				if arc && name == "" {
					// The ARC suite has AMSs with "h=" and "h=a::b"
					// pass: an empty name is taken as the name of no
					// field, which adds nothing (RFC 6376 §5.4.2).
					continue
				}
				if !validFieldName(name) {
					return nil, syntaxErr("h=: bad field name %q", name)
				}
				s.Headers = append(s.Headers, name)
			}
		case "i":
			if arc {
				n, err := strconv.Atoi(v)
				if err != nil || n < 1 || n > 50 || !allDigits(v) {
					return nil, syntaxErr("i=%s: not an ARC instance", v)
				}
				s.Instance = n
			} else {
				if !strings.Contains(v, "@") {
					return nil, syntaxErr("i=%s: no @", v)
				}
				s.Identity = v
			}
		case "l":
			if s.Length, err = parseNumber(v); err != nil {
				return nil, syntaxErr("l=%s: not a length", v)
			}
		case "q":
			ok := false
			for _, m := range strings.Split(v, ":") {
				ok = ok || strings.Trim(m, " \t\r\n") == "dns/txt"
			}
			if !ok {
				return nil, syntaxErr("q=%s: no dns/txt", v)
			}
		case "s":
			if !validSelector(v) {
				return nil, syntaxErr("s=%s: not a selector", v)
			}
			s.Selector = v
		case "t":
			if s.Timestamp, err = parseNumber(v); err != nil {
				return nil, syntaxErr("t=%s: not a time", v)
			}
		case "x":
			if s.Expiration, err = parseNumber(v); err != nil {
				return nil, syntaxErr("x=%s: not a time", v)
			}
		}
	}
	if !arc && s.Identity == "" {
		s.Identity = "@" + s.Domain
	}
	if s.Timestamp >= 0 && s.Expiration >= 0 && s.Expiration < s.Timestamp {
		return nil, syntaxErr("x= before t=")
	}
	return s, nil
}

// decodeBase64 decodes standard base64 with its padding.
func decodeBase64(s string) ([]byte, error) {
	return base64.StdEncoding.Strict().DecodeString(s)
}

// parseNumber parses 1 to 18 decimal digits (l=, t=, x= allow up to 76
// or 12; more than an int64 holds would not be a real length or time).
func parseNumber(s string) (int64, error) {
	if s == "" || len(s) > 18 || !allDigits(s) {
		return 0, fmt.Errorf("not a number: %q", s)
	}
	return strconv.ParseInt(s, 10, 64)
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return false
		}
	}
	return s != ""
}

// validDomain checks the syntax of a d= domain (RFC 6376 §3.5,
// RFC 5321 Domain): dot-separated labels of letters, digits and hyphens,
// not starting or ending with a hyphen; an underscore is let through, as
// DNS has it in the wild. A final dot is refused.
func validDomain(d string) bool {
	if d == "" || len(d) > 253 {
		return false
	}
	for _, label := range strings.Split(d, ".") {
		if !validLabel(label) {
			return false
		}
	}
	return true
}

// validSelector checks an s= selector (RFC 6376 §3.1): dot-separated
// labels, like a domain name.
func validSelector(s string) bool { return validDomain(s) }

func validLabel(l string) bool {
	if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
		return false
	}
	for i := 0; i < len(l); i++ {
		c := l[i]
		if !isAlpha(c) && !isDigit(c) && c != '-' && c != '_' {
			return false
		}
	}
	return true
}

// validFieldName checks a header field name (RFC 5322 §3.6.8).
func validFieldName(n string) bool {
	if n == "" {
		return false
	}
	for i := 0; i < len(n); i++ {
		if n[i] < 33 || n[i] > 126 || n[i] == ':' {
			return false
		}
	}
	return true
}

// identityDomain returns the domain of an i= value: what follows its
// last "@".
func identityDomain(i string) string {
	return i[strings.LastIndexByte(i, '@')+1:]
}

// inDomain reports whether sub is d or a subdomain of it, in any case.
func inDomain(sub, d string) bool {
	sub, d = strings.ToLower(sub), strings.ToLower(d)
	return sub == d || strings.HasSuffix(sub, "."+d)
}

// StripB returns the raw field with the value of its b= tag, and the
// whitespace around that value, deleted: the form a signature field is
// hashed in (RFC 6376 §3.7). Without a b= tag it returns the field as it
// is.
func StripB(raw []byte) []byte {
	colon := bytes.IndexByte(raw, ':')
	if colon < 0 {
		return raw
	}
	end := len(raw)
	if bytes.HasSuffix(raw, []byte("\r\n")) {
		end -= 2
	} else if bytes.HasSuffix(raw, []byte("\n")) {
		end--
	}
	// Walk the tag list: tag-name [FWS] "=" value up to ";".
	s := string(raw[:end])
	i := colon + 1
	for i < len(s) {
		i = skipFWS(s, i)
		start := i
		for i < len(s) && s[i] != '=' && s[i] != ';' {
			i++
		}
		name := strings.TrimRight(s[start:i], " \t\r\n")
		if i == len(s) || s[i] == ';' {
			i++
			continue
		}
		eq := i
		for i < len(s) && s[i] != ';' {
			i++
		}
		if name == "b" {
			out := make([]byte, 0, len(raw)-(i-eq-1))
			out = append(out, raw[:eq+1]...)
			return append(out, raw[i:]...)
		}
		i++
	}
	return raw
}
