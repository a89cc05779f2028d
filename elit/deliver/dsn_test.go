package deliver

import (
	"context"
	"io"
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
	msgs, _ := d.cfg.Queue.List()
	if len(msgs) != 1 || msgs[0].From != "" {
		t.Fatalf("want one DSN, got %+v", msgs)
	}
	f, err := d.cfg.Queue.Data(msgs[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, _ := io.ReadAll(f)
	for _, want := range []string{
		`Original-Recipient: utf-8;d\x{EF}n\x{2B}x@b\x{FC}cher.example` + "\r\n",
		"Original-Recipient: rfc822;b+x@example.org\r\n",
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("DSN lacks %q:\n%s", want, b)
		}
	}
}
