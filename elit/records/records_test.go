package records

import (
	"strings"
	"testing"

	"elit.local/elit/mailauth"
)

func TestFor(t *testing.T) {
	long := "v=DKIM1; k=rsa; p=" + strings.Repeat("A", 392)
	rs := List(Input{Domain: "example.org", Hostname: "mx.example.org", Keys: []mailauth.Key{{Domain: "example.org", Selector: "s1", Algorithm: "rsa-sha256", Record: long}}})
	var lines []string
	for _, r := range rs {
		lines = append(lines, r.String())
	}
	all := strings.Join(lines, "\n")
	for _, want := range []string{
		"example.org. MX 10 mx.example.org. ;",
		`example.org. TXT "v=spf1 mx -all" ;`,
		`s1._domainkey.example.org. TXT "v=DKIM1; k=rsa; p=` + strings.Repeat("A", 255-18) + `" "` + strings.Repeat("A", 392-(255-18)) + `" ; DKIM key s1`,
		`_dmarc.example.org. TXT "v=DMARC1; p=none; rua=mailto:postmaster@example.org" ;`,
		"_submissions._tcp.example.org. SRV 0 1 465 mx.example.org. ;",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("missing %q in\n%s", want, all)
		}
	}
}

func TestTLSA(t *testing.T) {
	data := "3 1 1 " + strings.Repeat("ab", 32)
	got := TLSA("mx.example.org", data).String()
	if want := "_25._tcp.mx.example.org. TLSA " + data + " ; DANE"; !strings.HasPrefix(got, want) {
		t.Errorf("TLSA: %q, want %q...", got, want)
	}
}
