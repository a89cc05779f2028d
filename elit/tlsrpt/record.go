package tlsrpt

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"elit.local/elit/dns"
	"elit.local/elit/mailaddr"
)

// Record is a TLSRPT policy record: the TXT record at "_smtp._tls.DOMAIN"
// (RFC 8460 §3).
type Record struct {
	// RUA are the aggregate report URIs, in order: "mailto:" and
	// "https:" ones are used, others kept as they are.
	RUA []*url.URL
	// Extensions are the other fields, name=value, in order.
	Extensions []string
}

// Errors of Lookup.
var (
	// ErrNoRecord: the domain publishes no TLSRPT record, or more than
	// one (§3: then it does not implement TLSRPT).
	ErrNoRecord = errors.New("no TLSRPT record")
)

// RecordName is the name of domain's TLSRPT record.
func RecordName(domain string) string { return "_smtp._tls." + strings.TrimSuffix(domain, ".") }

// ParseRecord parses a TLSRPT record strictly (RFC 8460 §3):
//
//	tlsrpt-record    = tlsrpt-version 1*(field-delim tlsrpt-field) [field-delim]
//	field-delim      = *WSP ";" *WSP
//	tlsrpt-field     = tlsrpt-rua / tlsrpt-extension
//	tlsrpt-version   = %s"v=TLSRPTv1"
//	tlsrpt-rua       = %s"rua=" tlsrpt-uri *(*WSP "," *WSP tlsrpt-uri)
//	tlsrpt-extension = tlsrpt-ext-name "=" tlsrpt-ext-value
//	tlsrpt-ext-name  = (ALPHA / DIGIT) *31(ALPHA / DIGIT / "_" / "-" / ".")
//	tlsrpt-ext-value = 1*(%x21-3A / %x3C / %x3E-7E)
//
// with exactly one rua field, each URI an absolute URI (RFC 3986) whose
// commas and exclamation marks are encoded; a mailto URI names one
// address, an https URI a host.
func ParseRecord(s string) (*Record, error) {
	fields := strings.Split(s, ";")
	if strings.TrimRight(fields[0], " \t") != "v=TLSRPTv1" {
		return nil, fmt.Errorf("tlsrpt record: does not start with v=TLSRPTv1")
	}
	if len(fields) < 2 {
		return nil, fmt.Errorf("tlsrpt record: no field after the version")
	}
	r := &Record{}
	rua := 0
	for i, f := range fields[1:] {
		f = strings.Trim(f, " \t")
		if f == "" && i == len(fields)-2 && i > 0 {
			break // a final delimiter
		}
		name, value, ok := strings.Cut(f, "=")
		switch {
		case !ok:
			return nil, fmt.Errorf("tlsrpt record: field %q is not name=value", f)
		case name == "rua":
			rua++
			uris, err := parseRUA(value)
			if err != nil {
				return nil, err
			}
			r.RUA = uris
		default:
			if !isExtName(name) || !isExtValue(value) {
				return nil, fmt.Errorf("tlsrpt record: bad field %q", f)
			}
			r.Extensions = append(r.Extensions, f)
		}
	}
	if rua != 1 {
		return nil, fmt.Errorf("tlsrpt record: %d rua fields, want 1", rua)
	}
	return r, nil
}

// parseRUA parses the value of a rua field: URIs separated by commas.
func parseRUA(v string) ([]*url.URL, error) {
	var out []*url.URL
	for _, s := range strings.Split(v, ",") {
		s = strings.Trim(s, " \t")
		if s == "" || !isURIChars(s) {
			return nil, fmt.Errorf("tlsrpt record: bad rua URI %q", s)
		}
		u, err := url.Parse(s)
		if err != nil || u.Scheme == "" {
			return nil, fmt.Errorf("tlsrpt record: bad rua URI %q", s)
		}
		switch u.Scheme {
		case "mailto":
			if _, err := MailtoAddress(u); err != nil {
				return nil, err
			}
		case "https":
			if u.Host == "" {
				return nil, fmt.Errorf("tlsrpt record: rua URI %q has no host", s)
			}
		}
		out = append(out, u)
	}
	return out, nil
}

// MailtoAddress is the address of a mailto rua URI (RFC 6068): one
// address, its header fields (?subject=...) left out.
func MailtoAddress(u *url.URL) (string, error) {
	addr := u.Opaque
	if addr == "" {
		addr = u.Path
	}
	a, err := url.PathUnescape(addr)
	if err != nil {
		return "", fmt.Errorf("tlsrpt record: bad mailto URI %q: %w", u, err)
	}
	if _, err := mailaddr.Parse(a); err != nil || strings.ContainsAny(a, ",") {
		return "", fmt.Errorf("tlsrpt record: mailto URI %q does not name one address", u)
	}
	return a, nil
}

// isURIChars reports whether s has only the characters of a URI (RFC
// 3986 §2: unreserved, reserved, and "%" of percent-encoding), without
// the comma and the exclamation mark that RFC 8460 §3 makes encode.
func isURIChars(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("-._~:/?#[]@$&'()*+=%", c) >= 0:
		default:
			return false
		}
	}
	return true
}

func isExtName(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || c != '_' && c != '-' && c != '.') {
			return false
		}
	}
	return true
}

func isExtValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x21 || c > 0x7e || c == ';' || c == '=' {
			return false
		}
	}
	return s != ""
}

// String is the record as it is published.
func (r *Record) String() string {
	uris := make([]string, len(r.RUA))
	for i, u := range r.RUA {
		uris[i] = u.String()
	}
	s := "v=TLSRPTv1; rua=" + strings.Join(uris, ",")
	for _, e := range r.Extensions {
		s += "; " + e
	}
	return s
}

// OwnRecord is the TLSRPT record for a domain of ours whose reports go
// to address (RFC 8460 §3): publish it at RecordName(domain).
func OwnRecord(address string) string {
	return "v=TLSRPTv1; rua=mailto:" + strings.NewReplacer(",", "%2C", "!", "%21", "%", "%25").Replace(address)
}

// Lookup returns domain's TLSRPT record. Of the TXT records at its
// name, those that do not start with "v=TLSRPTv1" are left out; when
// not exactly one is left the domain does not implement TLSRPT (RFC
// 8460 §3): ErrNoRecord, as when the name does not exist. A DNS failure
// is returned as it is (dns.ErrTemporary), and a bad record is an error.
func Lookup(ctx context.Context, r dns.Resolver, domain string) (*Record, error) {
	txts, err := r.LookupTXT(ctx, RecordName(domain))
	if errors.Is(err, dns.ErrNotFound) {
		return nil, ErrNoRecord
	}
	if err != nil {
		return nil, err
	}
	var recs []string
	for _, t := range txts {
		if v, _, ok := strings.Cut(t, ";"); ok && strings.TrimRight(v, " \t") == "v=TLSRPTv1" {
			recs = append(recs, t)
		}
	}
	if len(recs) != 1 {
		return nil, ErrNoRecord
	}
	return ParseRecord(recs[0])
}
