// Package records is the list of DNS records a domain served by Elit
// publishes, the same for `elit dns-records` and the status page: MX (RFC
// 5321 §5.1), SPF (RFC 7208), DKIM keys (RFC 6376 §3.6.2.1), DMARC (RFC
// 7489 §6.1) and the submission SRV records (RFC 6186 §3.1, RFC 8314
// §5.1). The host name's A and AAAA records hold the server's public
// addresses, which it cannot know behind NAT.
package records

import (
	"fmt"
	"strings"

	"elit.local/elit/mailauth"
)

// Record is one record to publish.
type Record struct {
	Name  string // owner name, absolute, with the final dot
	Type  string // MX, TXT, SRV, A/AAAA
	Value string // as in a zone file
	Why   string // what it is for
}

// String is the record in zone-file form, with its reason as a comment.
func (r Record) String() string {
	return fmt.Sprintf("%s %s %s ; %s", r.Name, r.Type, r.Value, r.Why)
}

// For returns the records of domain, served by hostname, with its DKIM
// keys.
func For(domain, hostname string, keys []mailauth.Key) []Record {
	rs := []Record{
		{domain + ".", "MX", "10 " + hostname + ".", "mail for the domain comes here"},
		{hostname + ".", "A/AAAA", "<the public address of this server>", "the MX host"},
		{domain + ".", "TXT", quote("v=spf1 mx -all"), "our MX sends the domain's mail, and the SRS-rewritten forwards"},
	}
	for _, k := range keys {
		rs = append(rs, Record{k.RecordName() + ".", "TXT", quote(k.Record), "DKIM key " + k.Selector + " (" + k.Algorithm + ")"})
	}
	rs = append(rs,
		Record{"_dmarc." + domain + ".", "TXT", quote("v=DMARC1; p=none; rua=mailto:postmaster@" + domain),
			"DMARC: p=none to start; p=quarantine, then p=reject once the reports show all mail signed"},
		Record{"_submissions._tcp." + domain + ".", "SRV", "0 1 465 " + hostname + ".", "mail clients find submission over TLS (RFC 8314)"},
		Record{"_submission._tcp." + domain + ".", "SRV", "0 1 587 " + hostname + ".", "mail clients find submission with STARTTLS (RFC 6186)"},
	)
	return rs
}

// quote writes a TXT value as zone files want it: in strings of at most
// 255 octets (RFC 1035 §3.3.14), each quoted.
func quote(s string) string {
	var parts []string
	for len(s) > 255 {
		parts = append(parts, `"`+s[:255]+`"`)
		s = s[255:]
	}
	parts = append(parts, `"`+s+`"`)
	return strings.Join(parts, " ")
}
