package deliver

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"elit.local/elit/queue"
)

// TestShutdownEndsTransaction: cancelling the context (shutdown) ends a
// transaction in progress at once, even one whose every step would get
// the full command timeout: here the peer takes the data and then says
// nothing.
func TestShutdownEndsTransaction(t *testing.T) {
	p := newPeer(t, nil)
	started := make(chan struct{})
	stall := make(chan struct{})
	t.Cleanup(func() { close(stall) }) // before the server closes
	p.OnData = func(io.Reader) error {
		close(started)
		<-stall
		return errors.New("stalled")
	}
	d := newDeliverer(t, Config{Resolver: loopbackMX("example.com"), Port: p.Port, Timeout: time.Minute})
	m := &queue.Message{From: "sender@example.net", Recipients: []queue.Recipient{{Address: "a@example.com"}}}
	queueMessage(t, d, m)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() {
		d.process(ctx, m.ID)
		close(done)
	}()
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("the peer never got the data")
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the delivery went on after the cancellation (the command timeout is a minute)")
	}
	got, err := d.cfg.Queue.Get(m.ID)
	if err != nil || got.Recipients[0].Status != queue.Pending {
		t.Errorf("after the interrupted delivery: %+v, %v; want it pending", got, err)
	}
}

// TestORCPT: the original recipient goes on as RFC 3461 §4.2 and RFC 6533
// §3 want it: rfc822 in xtext, utf-8 in utf-8-addr-xtext, or in
// utf-8-addr-unitext in an SMTPUTF8 transaction; a value no address can
// have is left out, never sent as it is.
func TestORCPT(t *testing.T) {
	for _, c := range []struct {
		name     string
		orcpt    string // as the queue keeps it: decoded
		smtputf8 bool
		wire     string // the parameter sent; "" for none
	}{
		{"rfc822", "RFC822;a+b=c@example.org", false, "ORCPT=RFC822;a+2Bb+3Dc@example.org"},
		{"utf-8 ASCII", "UTF-8;din@example.org", false, "ORCPT=UTF-8;din@example.org"},
		{"utf-8 + and =", "UTF-8;a+b=c@example.org", false, `ORCPT=UTF-8;a\x{2B}b\x{3D}c@example.org`},
		{"utf-8 + and = with SMTPUTF8", "UTF-8;a+b=c@example.org", true, `ORCPT=UTF-8;a\x{2B}b\x{3D}c@example.org`},
		{"utf-8 space and backslash", `UTF-8;"a b\c"@example.org`, false, `ORCPT=UTF-8;"a\x{20}b\x{5C}c"@example.org`},
		{"non-ASCII", "UTF-8;dïn@bücher.example", false, `ORCPT=UTF-8;d\x{EF}n@b\x{FC}cher.example`},
		{"non-ASCII with SMTPUTF8", "UTF-8;dïn@bücher.example", true, "ORCPT=UTF-8;dïn@bücher.example"},
		{"3, 4 and 5 hex digits", "UTF-8;😀@ドメイン.ελ", false, `ORCPT=UTF-8;\x{1F600}@\x{30C9}\x{30E1}\x{30A4}\x{30F3}.\x{3B5}\x{3BB}`},
		{"lower-case type", "utf-8;ü@example.org", false, `ORCPT=utf-8;\x{FC}@example.org`},
		{"control character", "UTF-8;a\x01b@example.org", false, `ORCPT=UTF-8;a\x{01}b@example.org`},
		{"DEL", "UTF-8;a\x7fb@example.org", true, `ORCPT=UTF-8;a\x{7F}b@example.org`},
		{"CR LF", "UTF-8;a\r\nRCPT TO:<evil@example.net>", false, ""},
		{"NUL", "UTF-8;a\x00b@example.org", true, ""},
		{"bad type", "RFC 822;a@example.org", false, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := newPeer(t, func(s *smtp.Server) { s.EnableDSN, s.EnableSMTPUTF8 = true, true })
			d := newDeliverer(t, Config{Resolver: loopbackMX("example.com"), Port: p.Port})
			m := &queue.Message{From: "sender@example.net", SMTPUTF8: c.smtputf8, Recipients: []queue.Recipient{
				{Address: "a@example.com", Notify: "FAILURE", ORcpt: c.orcpt},
			}}
			queueMessage(t, d, m)
			d.process(context.Background(), m.ID)
			wire := p.Wire.String()
			var rcpt string
			for _, l := range strings.Split(wire, "\n") {
				if strings.HasPrefix(l, "RCPT TO:") {
					rcpt = strings.TrimRight(l, "\r")
				}
			}
			want := "RCPT TO:<a@example.com> NOTIFY=FAILURE"
			if c.wire != "" {
				want += " " + c.wire
			}
			if rcpt != want {
				t.Errorf("sent  %q\nwant  %q", rcpt, want)
			}
			got := p.Received()
			if len(got) != 1 || len(got[0].Rcpts) != 1 {
				t.Fatalf("the peer received %+v\n%s", got, wire)
			}
			// The peer (go-smtp) decodes it back to the original.
			if c.wire != "" && !strings.EqualFold(got[0].ORcpts[0], c.orcpt) {
				t.Errorf("the peer decoded ORCPT %q, want %q", got[0].ORcpts[0], c.orcpt)
			}
		})
	}
}
