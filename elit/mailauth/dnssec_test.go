package mailauth

import (
	"strings"
	"testing"

	"elit.local/elit/dkim"
	"elit.local/elit/dns"
	"elit.local/elit/internal/dnsseclab"
)

// TestDNSSECComment: through a validating resolver (unbound in the lab),
// a check whose answers all come from a signed zone says "dnssec" in our
// Authentication-Results field; one that read an unsigned zone does not.
func TestDNSSECComment(t *testing.T) {
	pem, record, err := dkim.GenerateKey("ed25519", 0)
	if err != nil {
		t.Fatal(err)
	}
	key, err := dkim.ParsePrivateKey(pem)
	if err != nil {
		t.Fatal(err)
	}
	zone := func(d string) []string {
		return []string{
			d + `. 300 IN TXT "v=spf1 ip4:192.0.2.1 -all"`,
			"s1._domainkey." + d + `. 300 IN TXT "` + record + `"`,
			"_dmarc." + d + `. 300 IN TXT "v=DMARC1; p=reject"`,
			"mail." + d + ". 300 IN A 192.0.2.1",
		}
	}
	lab := dnsseclab.Start(t, dnsseclab.Config{Zones: []dnsseclab.Zone{
		{Name: "signed.example", Signed: true, Records: zone("signed.example")},
		{Name: "plain.example", Records: zone("plain.example")},
		{Name: "2.0.192.in-addr.arpa", Signed: true, Records: []string{"1.2.0.192.in-addr.arpa. 300 IN PTR mail.signed.example."}},
	}})
	for _, c := range []struct {
		domain string
		want   []string
		not    []string
	}{
		{"signed.example", []string{"spf=pass (dnssec) smtp.mailfrom=a@signed.example", "dkim=pass (dnssec) header.d=signed.example", "dmarc=pass (p=reject applied=none dnssec)", "iprev=pass (mail.signed.example dnssec)"}, nil},
		{"plain.example", []string{"spf=pass smtp.mailfrom=a@plain.example", "dkim=pass header.d=plain.example", "dmarc=pass (p=reject applied=none)"}, []string{"spf=pass (dnssec)", "dkim=pass (dnssec)", "applied=none dnssec"}},
	} {
		t.Run(c.domain, func(t *testing.T) {
			w := newWorld(t, "")
			s := w.step()
			s.Resolver = &dns.Client{Server: lab.Resolver}
			signer := &dkim.Signer{Domain: c.domain, Selector: "s1", Key: key}
			msg := signed(t, signer, message("a@"+c.domain, ""))
			tx, err := run(t, s, "", "a@"+c.domain, msg, "r@example.com")
			if err != nil {
				t.Fatal(err)
			}
			// The reverse zone and the name are signed: our Received
			// field says so.
			if tx.ClientName != "mail.signed.example" || !tx.ClientNameSecure {
				t.Errorf("client name %q, secure %v", tx.ClientName, tx.ClientNameSecure)
			}
			all := strings.Join(tx.Fields, "")
			ar := all[strings.Index(all, "Authentication-Results: mx.example.org;"):]
			ar = strings.Join(strings.Fields(ar), " ")
			for _, x := range c.want {
				if !strings.Contains(ar, x) {
					t.Errorf("no %q in\n%s", x, ar)
				}
			}
			for _, x := range c.not {
				if strings.Contains(ar, x) {
					t.Errorf("%q in\n%s", x, ar)
				}
			}
		})
	}
}
