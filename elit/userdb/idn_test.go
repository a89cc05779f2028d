package userdb

import (
	"slices"
	"testing"
)

// TestInternationalDomain: the U-label and the A-label forms of a domain
// are one domain (RFC 5890 §2.3.2.1), whichever the database uses: for
// local domains, lookups, expansion and the sender check.
func TestInternationalDomain(t *testing.T) {
	const lists = `{"name":"team","mailboxes":["din@xn--bcher-kva.example","bob@example.net"]},
		{"name":"fwd","mailboxes":["DIN@BÜCHER.example","din@xn--bcher-kva.example"]}`
	for _, c := range []struct {
		name, domain, js string
	}{
		{"U-label domain", "bücher.example", `[{"name":"din","mailboxes":["romain@example.com"]},` + lists + `]`},
		{"A-label domain", "xn--bcher-kva.example", `[{"name":"din","mailboxes":["romain@example.com"]},` + lists + `]`},
		{"upper-case A-label domain", "XN--BCHER-KVA.Example", `[{"name":"din","mailboxes":["romain@example.com"]},` + lists + `]`},
		{"U-label name", "example.org", `[{"name":"din@bücher.example","mailboxes":["romain@example.com"]},
			{"name":"team@xn--bcher-kva.example","mailboxes":["din@bücher.example","bob@example.net"]},
			{"name":"fwd@bücher.example","mailboxes":["DIN@BÜCHER.example","din@xn--bcher-kva.example"]}]`},
		{"A-label name", "example.org", `[{"name":"din@xn--bcher-kva.example","mailboxes":["romain@example.com"]},
			{"name":"team@bücher.example","mailboxes":["din@xn--bcher-kva.example","bob@example.net"]},
			{"name":"fwd@XN--BCHER-KVA.example","mailboxes":["DIN@BÜCHER.example","din@xn--bcher-kva.example"]}]`},
	} {
		t.Run(c.name, func(t *testing.T) {
			db, err := Parse([]byte(c.js), c.domain)
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range []string{"bücher.example", "BÜCHER.Example.", "xn--bcher-kva.example", "XN--BCHER-KVA.EXAMPLE"} {
				if !db.IsLocalDomain(d) {
					t.Errorf("IsLocalDomain(%q) = false", d)
				}
			}
			if db.IsLocalDomain("bucher.example") || db.IsLocalDomain("xn--bcher-kva.example.org") {
				t.Error("another domain is local")
			}
			din := db.Lookup("din@bücher.example")
			if din == nil || din.Address != "din@xn--bcher-kva.example" {
				t.Fatalf("Lookup(din@bücher.example) = %+v", din)
			}
			for _, a := range []string{"din@xn--bcher-kva.example", "Din@BÜCHER.example", "din@XN--BCHER-KVA.example."} {
				if u := db.Lookup(a); u != din {
					t.Errorf("Lookup(%q) = %+v, want din", a, u)
				}
				if got, err := db.Expand(a); err != nil || !slices.Equal(got, []string{"romain@example.com"}) {
					t.Errorf("Expand(%q) = %q, %v", a, got, err)
				}
				if !db.CanSendAs(din, a) {
					t.Errorf("din cannot send as %q", a)
				}
			}
			// A list naming din in the other form: din is a member.
			for _, a := range []string{"team@bücher.example", "team@xn--bcher-kva.example"} {
				if !db.CanSendAs(din, a) {
					t.Errorf("din cannot send as the list %q", a)
				}
				if got, err := db.Expand(a); err != nil || !slices.Equal(got, []string{"romain@example.com", "bob@example.net"}) {
					t.Errorf("Expand(%q) = %q, %v", a, got, err)
				}
			}
			// Both forms of one address are one mailbox.
			if got, err := db.Expand("fwd@bücher.example"); err != nil || !slices.Equal(got, []string{"romain@example.com"}) {
				t.Errorf("Expand(fwd) = %q, %v", got, err)
			}
			n := 0
			for _, d := range db.Domains() {
				if d == "bücher.example" || d == "xn--bcher-kva.example" {
					n++
				}
			}
			if n != 1 {
				t.Errorf("Domains() = %q, want bücher.example once", db.Domains())
			}
		})
	}
}
