// Package records is the list of DNS records a domain served by Elit
// publishes, the same for `elit dns-records` and the status page: MX (RFC
// 5321 §5.1), SPF (RFC 7208), DKIM keys (RFC 6376 §3.6.2.1), DMARC (RFC
// 7489 §6.1), the submission SRV records (RFC 6186 §3.1, RFC 8314
// §5.1), the MX host's TLSA record for DANE (RFC 7672 §2.2.3, RFC 6698
// §2), MTA-STS (RFC 8461 §3) and TLSRPT (RFC 8460 §3). The host name's A and AAAA records hold the server's public
// addresses, which it cannot know behind NAT.
package records

import (
	"fmt"
	"strings"

	"elit.local/elit/mailauth"
	"elit.local/elit/mtasts"
	"elit.local/elit/tlsrpt"
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

// Input is what the records of a domain depend on.
type Input struct {
	Domain, Hostname string
	Keys             []mailauth.Key // the domain's DKIM keys
	// TLSA is the MX's TLSA record data ("3 1 1 <hex>"), "" for none.
	TLSA string
	// TLSReports is the address TLS reports go to (RFC 8460), "" for no
	// TLSRPT record.
	TLSReports string
	// MTASTS is the MTA-STS policy we publish, nil for none.
	MTASTS *mtasts.Policy
}

// List returns every record of in.Domain, the same list for `elit
// dns-records` and the status page.
func List(in Input) []Record {
	domain, hostname := in.Domain, in.Hostname
	rs := []Record{
		{domain + ".", "MX", "10 " + hostname + ".", "mail for the domain comes here"},
		{hostname + ".", "A/AAAA", "<the public address of this server>", "the MX host"},
		{domain + ".", "TXT", quote("v=spf1 mx -all"), "our MX sends the domain's mail, and the SRS-rewritten forwards"},
	}
	for _, k := range in.Keys {
		rs = append(rs, Record{k.RecordName() + ".", "TXT", quote(k.Record), "DKIM key " + k.Selector + " (" + k.Algorithm + ")"})
	}
	rs = append(rs,
		Record{"_dmarc." + domain + ".", "TXT", quote("v=DMARC1; p=none; rua=mailto:postmaster@" + domain),
			"DMARC: p=none to start; p=quarantine, then p=reject once the reports show all mail signed"},
		Record{"_submissions._tcp." + domain + ".", "SRV", "0 1 465 " + hostname + ".", "mail clients find submission over TLS (RFC 8314)"},
		Record{"_submission._tcp." + domain + ".", "SRV", "0 1 587 " + hostname + ".", "mail clients find submission with STARTTLS (RFC 6186)"},
	)
	if in.TLSA != "" {
		rs = append(rs, TLSA(hostname, in.TLSA))
	}
	if in.MTASTS != nil {
		for _, r := range mtasts.Records(domain, hostname, *in.MTASTS) {
			rs = append(rs, Record{r.Name, r.Type, r.Value, r.Why + " (served with -acme)"})
		}
	}
	if in.TLSReports != "" {
		rs = append(rs, Record{tlsrpt.RecordName(domain) + ".", "TXT", quote(tlsrpt.OwnRecord(in.TLSReports)),
			"TLSRPT (RFC 8460): where senders report their TLS with us"})
	}
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

// TLSA is the TLSA record of the MX host hostname, data its record data
// ("3 1 1 <hex>", the server key's digest: elit/certs). It is at
// _25._tcp.HOSTNAME (RFC 7672 §2.2.3) and counts only in a zone signed
// with DNSSEC; it stays true across certificate renewals, which keep the
// key (RFC 7671 §8.1).
func TLSA(hostname, data string) Record {
	return Record{"_25._tcp." + hostname + ".", "TLSA", data,
		"DANE (RFC 7672): the MX's key; publish it where the zone is signed with DNSSEC"}
}
