package main

import (
	"regexp"
	"strings"
	"testing"

	"elit.local/elit/dns/dnstest"
)

// TestAuthTools: the operator's tools, against a DNS of the test's own:
// make a key, sign with it, verify (the record published), and ask SPF,
// DMARC and ARC what a receiver finds.
func TestAuthTools(t *testing.T) {
	state := t.TempDir()
	code, out, errs := runElit("", "dkim", "genkey", "-domain", "example.org", "-selector", "s1", "-state", state)
	rec := regexp.MustCompile(`(?m)^s1\._domainkey\.example\.org\. TXT "(v=DKIM1; k=rsa; p=[^"]+)"$`).FindStringSubmatch(out)
	if code != 0 || rec == nil {
		t.Fatalf("genkey: %d %q %q", code, out, errs)
	}
	if code, _, errs := runElit("", "dkim", "genkey", "-domain", "example.org", "-selector", "s1", "-state", state); code == 0 || !strings.Contains(errs, "exists") {
		t.Errorf("genkey over an existing key: %d %q", code, errs)
	}
	zone := dnstest.Zone{Records: []string{
		`s1._domainkey.example.org. 300 IN TXT "` + strings.ReplaceAll(rec[1], `"`, ``) + `"`,
		`example.org. 300 IN TXT "v=spf1 ip4:192.0.2.1 -all"`,
		`_dmarc.example.org. 300 IN TXT "v=DMARC1; p=reject; adkim=s"`,
	}}
	resolver := dnstest.Serve(t, zone)
	msg := "From: din@example.org\nTo: x@example.net\nSubject: test\n\nHello.\n"
	code, signed, errs := runElit(msg, "dkim", "sign", "-domain", "example.org", "-state", state)
	if code != 0 || !strings.HasPrefix(signed, "DKIM-Signature: v=1; a=rsa-sha256;") || !strings.Contains(signed, "\r\nSubject: test\r\n") {
		t.Fatalf("sign: %d %q %q", code, signed, errs)
	}
	for _, c := range []struct {
		stdin string
		args  []string
		code  int
		want  string
	}{
		{signed, []string{"dkim", "verify", "-resolver", resolver}, 0, "pass d=example.org s=s1 a=rsa-sha256"},
		{strings.Replace(signed, "Hello.", "Hullo.", 1), []string{"dkim", "verify", "-resolver", resolver}, 1, "fail d=example.org"},
		{msg, []string{"dkim", "verify", "-resolver", resolver}, 1, "none: no DKIM-Signature"},
		{"", []string{"spf", "check", "-resolver", resolver, "-ip", "192.0.2.1", "-helo", "mx.example.org", "-from", "din@example.org"}, 0, "mailfrom: pass (din@example.org, domain example.org, matched ip4:192.0.2.1)"},
		{"", []string{"spf", "check", "-resolver", resolver, "-ip", "192.0.2.9", "-helo", "mx.example.org", "-from", "din@example.org"}, 0, "mailfrom: fail"},
		{"", []string{"dmarc", "lookup", "-resolver", resolver, "mail.example.org"}, 0, "p=reject sp=reject adkim=s aspf=r pct=100 (organizational domain example.org)"},
		{"", []string{"dmarc", "lookup", "-resolver", resolver, "example.net"}, 1, "no DMARC record for example.net"},
		{msg, []string{"arc", "verify", "-resolver", resolver}, 0, "cv=none, 0 sets"},
		{"", []string{"dns-records", "-domain", "example.org", "-hostname", "mx.example.org", "-state", state}, 0, `s1._domainkey.example.org. TXT "v=DKIM1; k=rsa; p=`},
	} {
		code, out, errs := runElit(c.stdin, c.args...)
		if code != c.code || !strings.Contains(out, c.want) {
			t.Errorf("elit %s: %d %q %q, want %d %q", strings.Join(c.args, " "), code, out, errs, c.code, c.want)
		}
	}
}
