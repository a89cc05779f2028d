package arc

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"elit.local/elit/dkim"
)

// MaxSets is the most ARC sets a chain may have (RFC 8617 §4.2.1, §5.2).
const MaxSets = 50

// The ARC header fields (RFC 8617 §4.1).
const (
	aarName  = "ARC-Authentication-Results"
	amsName  = "ARC-Message-Signature"
	sealName = "ARC-Seal"
)

// Set is one ARC set as found in a message: the three fields of one
// instance (RFC 8617 §4.1, §4.2).
type Set struct {
	Instance int
	AAR      dkim.Field // ARC-Authentication-Results
	AMS      dkim.Field // ARC-Message-Signature
	AS       dkim.Field // ARC-Seal
}

// IsARC reports whether f is one of the ARC header fields.
func IsARC(f dkim.Field) bool {
	return f.Is(aarName) || f.Is(amsName) || f.Is(sealName)
}

// ParseSets collects the ARC sets of a header and checks the structure of
// the chain (RFC 8617 §5.2 steps 1 and 3.1-3.2): every ARC field has a
// readable instance (i=) from 1 to MaxSets, each instance has exactly one
// field of each kind, and the instances run from 1 to n without a gap.
// It returns the sets in instance order, the highest instance found (also
// with an error), and nil sets with no error when the message has no ARC
// field.
func ParseSets(hdr dkim.Header) ([]Set, int, error) {
	type partial struct{ aar, ams, as *dkim.Field }
	byInstance := map[int]*partial{}
	highest := 0
	var errs []error
	for i := range hdr {
		f := &hdr[i]
		var (
			n   int
			err error
		)
		switch {
		case f.Is(aarName):
			n, err = aarInstance(f.Value())
		case f.Is(amsName), f.Is(sealName):
			n, err = tagInstance(f.Value())
		default:
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", f.Name, err))
			continue
		}
		highest = max(highest, n)
		p := byInstance[n]
		if p == nil {
			p = &partial{}
			byInstance[n] = p
		}
		slot := &p.aar
		if f.Is(amsName) {
			slot = &p.ams
		} else if f.Is(sealName) {
			slot = &p.as
		}
		if *slot != nil {
			errs = append(errs, fmt.Errorf("two %s fields with i=%d", f.Name, n))
			continue
		}
		*slot = f
	}
	if len(byInstance) == 0 && len(errs) == 0 {
		return nil, 0, nil
	}
	if len(errs) > 0 {
		return nil, highest, errs[0]
	}
	sets := make([]Set, 0, len(byInstance))
	for n := 1; n <= highest; n++ {
		p := byInstance[n]
		if p == nil {
			return nil, highest, fmt.Errorf("no ARC set with i=%d (of %d)", n, highest)
		}
		var missing []string
		if p.aar == nil {
			missing = append(missing, aarName)
		}
		if p.ams == nil {
			missing = append(missing, amsName)
		}
		if p.as == nil {
			missing = append(missing, sealName)
		}
		if len(missing) > 0 {
			return nil, highest, fmt.Errorf("ARC set i=%d lacks %s", n, strings.Join(missing, ", "))
		}
		sets = append(sets, Set{Instance: n, AAR: *p.aar, AMS: *p.ams, AS: *p.as})
	}
	return sets, highest, nil
}

var errInstance = errors.New("bad instance")

// parseInstance reads an instance number: decimal, 1 to MaxSets
// (RFC 8617 §4.2.1).
func parseInstance(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || s[0] < '0' || s[0] > '9' {
		return 0, fmt.Errorf("%w: i=%s", errInstance, s)
	}
	if n > MaxSets {
		return 0, fmt.Errorf("%w: i=%d is over %d", errInstance, n, MaxSets)
	}
	return n, nil
}

// tagInstance reads i= of an ARC-Seal or ARC-Message-Signature.
func tagInstance(value []byte) (int, error) {
	tags, err := dkim.ParseTagList(string(value))
	if err != nil {
		return 0, err
	}
	i, ok := tags.Get("i")
	if !ok {
		return 0, fmt.Errorf("%w: no i= tag", errInstance)
	}
	return parseInstance(i)
}

// aarInstance reads the instance that starts an
// ARC-Authentication-Results value (RFC 8617 §4.1.1):
//
//	arc-authres-header = "ARC-Authentication-Results:" [CFWS] arc-info
//	arc-info = instance [CFWS] ";" authres-payload
//	instance = [FWS] "i" [FWS] "=" [FWS] 1*2DIGIT
//
// (comments are not accepted before the instance).
func aarInstance(value []byte) (int, error) {
	s := string(value)
	i := skipWSP(s, 0)
	if i == len(s) || s[i] != 'i' {
		return 0, fmt.Errorf("%w: does not start with i=", errInstance)
	}
	i = skipWSP(s, i+1)
	if i == len(s) || s[i] != '=' {
		return 0, fmt.Errorf("%w: does not start with i=", errInstance)
	}
	i = skipWSP(s, i+1)
	start := i
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	digits := s[start:i]
	if digits == "" {
		return 0, fmt.Errorf("%w: i= without a number", errInstance)
	}
	i = skipWSP(s, i)
	if i == len(s) || s[i] != ';' {
		return 0, fmt.Errorf("%w: no \";\" after i=%s", errInstance, digits)
	}
	return parseInstance(digits)
}

// skipWSP skips spaces, tabs and line folds.
func skipWSP(s string, i int) int {
	for i < len(s) && strings.IndexByte(" \t\r\n", s[i]) >= 0 {
		i++
	}
	return i
}

// seal is a parsed ARC-Seal (RFC 8617 §4.1.3).
type seal struct {
	Instance  int
	CV        Status
	Algorithm string
	B         []byte
	Domain    string
	Selector  string
}

// parseSeal parses an ARC-Seal value: tags i, a, b, cv, d, s required,
// t optional (digits), h= forbidden (RFC 8617 §4.1.3: the seal signs no
// chosen fields), unknown tags ignored.
func parseSeal(value []byte) (*seal, error) {
	tags, err := dkim.ParseTagList(string(value))
	if err != nil {
		return nil, err
	}
	for _, name := range []string{"i", "a", "b", "cv", "d", "s"} {
		if _, ok := tags.Get(name); !ok {
			return nil, fmt.Errorf("no %s= tag", name)
		}
	}
	s := &seal{}
	for _, t := range tags {
		v := t.Value
		switch t.Name {
		case "i":
			if s.Instance, err = parseInstance(v); err != nil {
				return nil, err
			}
		case "a":
			if v != dkim.RSASHA256 && v != dkim.Ed25519SHA256 {
				return nil, fmt.Errorf("a=%s: not an ARC algorithm", v)
			}
			s.Algorithm = v
		case "b":
			if s.B, err = decodeB64(v); err != nil {
				return nil, fmt.Errorf("b=: %w", err)
			}
		case "cv":
			switch Status(v) {
			case None, Pass, Fail:
				s.CV = Status(v)
			default:
				return nil, fmt.Errorf("cv=%s: not none, pass or fail", v)
			}
		case "d":
			if !validDomain(v) {
				return nil, fmt.Errorf("d=%s: not a domain", v)
			}
			s.Domain = v
		case "s":
			if !validDomain(v) {
				return nil, fmt.Errorf("s=%s: not a selector", v)
			}
			s.Selector = v
		case "t":
			if v == "" || strings.Trim(v, "0123456789") != "" || len(v) > 18 {
				return nil, fmt.Errorf("t=%s: not a time", v)
			}
		case "h":
			return nil, errors.New("h= in an ARC-Seal")
		}
	}
	return s, nil
}

// validDomain accepts what dkim.ParseSignature accepts as d= or s=.
func validDomain(d string) bool {
	if d == "" || len(d) > 253 {
		return false
	}
	for _, l := range strings.Split(d, ".") {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		if strings.Trim(strings.ToLower(l), "abcdefghijklmnopqrstuvwxyz0123456789-_") != "" {
			return false
		}
	}
	return true
}

// sortedARC returns the ARC fields of sets in the order the seal hashes
// them (RFC 8617 §5.1.1): by instance, and AAR, AMS, AS within each.
func sortedARC(sets []Set) []dkim.Field {
	out := make([]dkim.Field, 0, 3*len(sets))
	sets = slices.Clone(sets)
	slices.SortFunc(sets, func(a, b Set) int { return a.Instance - b.Instance })
	for _, s := range sets {
		out = append(out, s.AAR, s.AMS, s.AS)
	}
	return out
}
