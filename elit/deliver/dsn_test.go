package deliver

import (
	"context"
	"strings"
	"testing"

	"elit.local/elit/dns"
	"elit.local/elit/queue"
)

// TestDSNOriginalRecipient: a utf-8 original recipient is written in
// the 7-bit form in message/delivery-status (RFC 6533 §3), an rfc822 one
// as it is.
func TestDSNOriginalRecipient(t *testing.T) {
	d := newDeliverer(t, Config{Resolver: &dns.Mem{}})
	m := &queue.Message{From: "sender@example.net", Recipients: []queue.Recipient{
		{Address: "a@example.com", Status: queue.Failed, LastError: "5.1.1 no", ORcpt: "UTF-8;dïn+x@bücher.example"},
		{Address: "b@example.com", Status: queue.Failed, LastError: "5.1.1 no", ORcpt: "RFC822;b+x@example.org"},
	}}
	queueMessage(t, d, m)
	d.process(context.Background(), m.ID)
	if msgs, _ := d.cfg.Queue.List(); len(msgs) != 1 {
		t.Fatalf("want only the DSN queued, got %+v", msgs)
	}
	dsn, _ := dsnOf(t, d)
	for _, want := range []string{
		`Original-Recipient: utf-8;d\x{EF}n\x{2B}x@b\x{FC}cher.example` + "\r\n",
		"Original-Recipient: rfc822;b+x@example.org\r\n",
	} {
		if !strings.Contains(dsn, want) {
			t.Errorf("DSN lacks %q:\n%s", want, dsn)
		}
	}
}
