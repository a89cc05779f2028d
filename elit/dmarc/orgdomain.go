package dmarc

import (
	"strings"

	"golang.org/x/net/idna"
	"golang.org/x/net/publicsuffix"
)

// OrgDomain returns the organizational domain of domain (RFC 7489 §3.2):
// its public suffix (the Public Suffix List of golang.org/x/net, ICANN
// and private sections) and one label more, in lower case, in the form
// domain is written in (A-labels or U-labels). A domain that is itself a
// public suffix is its own organizational domain.
func OrgDomain(domain string) string {
	if org, ok := registrable(domain); ok {
		return org
	}
	return normalize(domain)
}

// normalize writes a domain for comparisons: lower case, no final dot.
func normalize(domain string) string {
	return strings.ToLower(strings.TrimSuffix(domain, "."))
}

// registrable returns the registrable domain of domain: ok false when it
// has none (it is a public suffix, or no domain name), as the PSL's own
// tests say (checkPublicSuffix with null).
func registrable(domain string) (string, bool) {
	d := strings.ToLower(domain)
	if d == "" || strings.HasPrefix(d, ".") || strings.HasSuffix(d, ".") || strings.Contains(d, "..") {
		return "", false
	}
	ascii, err := idna.ToASCII(d)
	if err != nil {
		return "", false
	}
	etld1, err := publicsuffix.EffectiveTLDPlusOne(ascii)
	if err != nil {
		return "", false
	}
	// As many labels of d as etld1 has: the same in U-labels.
	n := strings.Count(etld1, ".") + 1
	labels := strings.Split(d, ".")
	if n > len(labels) {
		return "", false
	}
	return strings.Join(labels[len(labels)-n:], "."), true
}
