package mtasts

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"elit.local/elit/dns"
)

// Record is the TXT record at _mta-sts.<domain> (RFC 8461 §3.1), which
// says that the domain has a policy and which one.
type Record struct {
	// ID names the policy in force: a new id means a new policy.
	ID string
}

// String is the record as it is published.
func (r Record) String() string { return "v=STSv1; id=" + r.ID + ";" }

// ErrNoRecord is wrapped by LookupRecord's error when the domain has no
// usable MTA-STS record: none, several, or one that does not parse
// (§3.1: senders "MUST assume the recipient domain does not have an
// available MTA-STS Policy").
var ErrNoRecord = errors.New("no MTA-STS record")

// ParseRecord parses an MTA-STS TXT record (§3.1):
//
//	sts-text-record = sts-version 1*(sts-field-delim sts-field) [sts-field-delim]
//	sts-field       = sts-id / sts-extension
//	sts-field-delim = *WSP ";" *WSP
//	sts-version     = %s"v=STSv1"
//	sts-id          = %s"id=" 1*32(ALPHA / DIGIT)
//	sts-extension   = sts-ext-name "=" sts-ext-value
//	sts-ext-value   = 1*(%x21-3A / %x3C / %x3E-7E)
//
// An id is required; other fields are ignored, as are repeats of id (the
// first counts, §3.2).
func ParseRecord(txt string) (Record, error) {
	rest, ok := strings.CutPrefix(txt, "v=STSv1")
	if !ok {
		return Record{}, fmt.Errorf("record %q: does not begin with v=STSv1", txt)
	}
	var rec Record
	fields := 0
	for rest != "" {
		rest = strings.TrimLeft(rest, " \t")
		if !strings.HasPrefix(rest, ";") {
			return Record{}, fmt.Errorf("record %q: %q where a semicolon was expected", txt, rest)
		}
		rest = strings.TrimLeft(rest[1:], " \t")
		if rest == "" {
			break // the optional final delimiter
		}
		i := strings.IndexByte(rest, '=')
		if i < 0 {
			return Record{}, fmt.Errorf("record %q: %q is not name=value", txt, rest)
		}
		name := rest[:i]
		rest = rest[i+1:]
		n := 0
		for n < len(rest) && rest[n] >= 0x21 && rest[n] <= 0x7e && rest[n] != ';' && rest[n] != '=' {
			n++
		}
		value := rest[:n]
		rest = rest[n:]
		if !validExtName(name) || value == "" {
			return Record{}, fmt.Errorf("record %q: field %q=%q", txt, name, value)
		}
		fields++
		if name == "id" && rec.ID == "" {
			if !validID(value) {
				return Record{}, fmt.Errorf("record %q: id %q is not 1 to 32 letters and digits", txt, value)
			}
			rec.ID = value
		}
	}
	if rec.ID == "" {
		return Record{}, fmt.Errorf("record %q: no id", txt)
	}
	return rec, nil
}

func validID(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isAlnum(s[i]) {
			return false
		}
	}
	return true
}

// isSTS reports whether a TXT record is an MTA-STS record, to be parsed
// and counted: its version field is v=STSv1 (the package documentation
// says why not only "v=STSv1;").
func isSTS(txt string) bool {
	rest, ok := strings.CutPrefix(txt, "v=STSv1")
	return ok && (rest == "" || rest[0] == ' ' || rest[0] == '\t' || rest[0] == ';')
}

// LookupRecord looks up the MTA-STS record of domain (lower-case
// A-labels) at _mta-sts.<domain>, a CNAME followed (§3.1), and returns
// it with its text. When there is no usable record (no such name, no
// MTA-STS record among the TXT records, several, or one that does not
// parse) the error wraps ErrNoRecord; a failed lookup wraps
// dns.ErrTemporary.
func LookupRecord(ctx context.Context, resolver dns.Resolver, domain string) (Record, string, error) {
	name := "_mta-sts." + domain
	txts, err := resolver.LookupTXT(ctx, name)
	if errors.Is(err, dns.ErrNotFound) {
		return Record{}, "", fmt.Errorf("%s: %w (%w)", name, ErrNoRecord, err)
	}
	if err != nil {
		return Record{}, "", fmt.Errorf("%s: %w", name, err)
	}
	var sts []string
	for _, t := range txts {
		if isSTS(t) {
			sts = append(sts, t)
		}
	}
	switch len(sts) {
	case 0:
		return Record{}, "", fmt.Errorf("%s: %w", name, ErrNoRecord)
	case 1:
	default:
		return Record{}, "", fmt.Errorf("%s: %w: %d records %q", name, ErrNoRecord, len(sts), sts)
	}
	rec, err := ParseRecord(sts[0])
	if err != nil {
		return Record{}, "", fmt.Errorf("%s: %w: %w", name, ErrNoRecord, err)
	}
	return rec, sts[0], nil
}
