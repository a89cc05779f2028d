package deliver

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/emersion/go-smtp"

	"elit.local/elit/dns"
	"elit.local/elit/queue"
)

// TestDeliverInternationalDomain: the MX of an internationalised domain
// is looked up by its A-label (the DNS knows no U-labels), the U-label
// and A-label forms of the domain are one destination, and the address
// goes as written with SMTPUTF8, in A-labels without.
func TestDeliverInternationalDomain(t *testing.T) {
	for _, c := range []struct {
		name     string
		smtputf8 bool
		want     []string // RCPT TO as the peer got them
	}{
		{"SMTPUTF8", true, []string{"din@bücher.example", "bob@XN--BCHER-KVA.example"}},
		{"ASCII", false, []string{"din@xn--bcher-kva.example", "bob@XN--BCHER-KVA.example"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := newPeer(t, func(s *smtp.Server) { s.EnableSMTPUTF8 = true })
			d := newDeliverer(t, Config{Resolver: loopbackMX("xn--bcher-kva.example"), Port: p.Port})
			m := &queue.Message{From: "sender@example.net", SMTPUTF8: c.smtputf8, Recipients: []queue.Recipient{
				{Address: "din@bücher.example"}, {Address: "bob@XN--BCHER-KVA.example"},
			}}
			queueMessage(t, d, m)
			d.process(context.Background(), m.ID)
			if got, err := d.cfg.Queue.Get(m.ID); !errors.Is(err, queue.ErrNotFound) {
				t.Fatalf("not delivered (%v): %+v", err, got)
			}
			got := p.Received()
			if len(got) != 1 || !slices.Equal(got[0].Rcpts, c.want) {
				t.Errorf("the peer received %+v, want one transaction to %q", got, c.want)
			}
		})
	}
}

// TestDeliverAddressLiteral: mail to an address literal goes to that
// address, on the delivery port, with no MX lookup.
func TestDeliverAddressLiteral(t *testing.T) {
	p := newPeer(t, nil)
	d := newDeliverer(t, Config{Resolver: &dns.Mem{}, Port: p.Port})
	m := &queue.Message{From: "sender@example.net", Recipients: []queue.Recipient{{Address: "user@[127.0.0.1]"}}}
	queueMessage(t, d, m)
	d.process(context.Background(), m.ID)
	if got, err := d.cfg.Queue.Get(m.ID); !errors.Is(err, queue.ErrNotFound) {
		t.Fatalf("not delivered (%v): %+v", err, got)
	}
	if got := p.Received(); len(got) != 1 || !slices.Equal(got[0].Rcpts, []string{"user@[127.0.0.1]"}) {
		t.Errorf("the peer received %+v", got)
	}
}

func TestLiteralIP(t *testing.T) {
	for _, c := range []struct{ domain, want string }{ // want "" means not a literal
		{"[192.0.2.1]", "192.0.2.1"},
		{"[IPv6:2001:db8::1]", "2001:db8::1"},
		{"[ipv6:::1]", "::1"},
		{"[2001:db8::1]", ""}, // IPv6 needs its tag (RFC 5321 §4.1.3)
		{"[X-tag:whatever]", ""},
		{"[IPv6:fe80::1%eth0]", ""},
		{"example.org", ""},
		{"[192.0.2.1", ""},
		{"192.0.2.1]", ""},
		{"[]", ""},
	} {
		ip, ok := literalIP(c.domain)
		if got := ip.String(); ok != (c.want != "") || ok && got != c.want {
			t.Errorf("literalIP(%q) = %v, %v; want %q", c.domain, ip, ok, c.want)
		}
	}
}
