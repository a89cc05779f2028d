package main

import (
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
)

// TestServeSmuggling: a message with a bare LF end-of-data (and its
// variants) is refused whole; the "smuggled" second message is never
// queued. A bare LF or CR anywhere in the data is refused too.
func TestServeSmuggling(t *testing.T) {
	s := startServer(t)
	q := openQueue(t, s)
	for _, eod := range []string{"\n.\n", "\n.\r\n", "\r\n.\n", "\r.\r\n", "\r\n.\r"} {
		t.Run(fmt.Sprintf("%q", eod), func(t *testing.T) {
			c := mxData(t, s.mx, "<x@example.net>", "<din@example.org>")
			c.send("Subject: first\r\n\r\nfirst" + eod +
				"MAIL FROM:<admin@example.org>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\nSubject: smuggled\r\n\r\nsmuggled\r\n.\r\n")
			// Each is refused for its bare CR or LF ("\r\n.\r" + "M" too:
			// upstream go-smtp's reader deleted that CR, third_party/go-smtp
			// keeps it).
			if r, _ := c.reply(); !strings.HasPrefix(r, "550 5.5.2") {
				t.Errorf("reply %q", r)
			}
			c.send("QUIT\r\n")
			c.expect("221")
		})
	}
	msgs, _ := q.List()
	for _, m := range msgs {
		if len(m.Recipients) != 1 || m.Recipients[0].Address != "romain@example.com" {
			t.Errorf("a smuggled message was queued: %+v", m)
		}
	}
	if len(msgs) > 0 {
		t.Errorf("%d messages queued", len(msgs))
	}
	c := dialRaw(t, s.sub)
	c.send("EHLO client.example.net\r\n")
	c.expect("250")
	c.startTLS(s.cert)
	c.send("EHLO client.example.net\r\nAUTH PLAIN " + base64.StdEncoding.EncodeToString([]byte("\x00din\x00"+dinPassword)) + "\r\n")
	c.expect("250")
	c.expect("235")
	c.send("MAIL FROM:<din@example.org>\r\nRCPT TO:<x@example.net>\r\nDATA\r\n")
	c.expect("250")
	c.expect("250")
	c.expect("354")
	c.send("From: din@example.org\r\n\r\nbare\nLF\r\n.\r\n")
	c.expect("550 5.5.2")
	if after, _ := q.List(); len(after) != len(msgs) {
		t.Errorf("the bare-LF message was queued")
	}
}

// TestServeStartTLSInjection: commands pipelined after STARTTLS in the
// same packet are discarded, not run inside TLS (CVE-2011-0411 family).
func TestServeStartTLSInjection(t *testing.T) {
	s := startServer(t)
	c := dialRaw(t, s.sub)
	c.send("EHLO client.example.net\r\n")
	c.expect("250")
	c.send("STARTTLS\r\nEHLO injected.example\r\nMAIL FROM:<din@example.org>\r\n")
	c.expect("220")
	c.tlsUp(s.cert)
	c.send("NOOP\r\n")
	// The first reply inside TLS must be to NOOP, not to the injected EHLO.
	if r := c.expect("250"); !strings.HasPrefix(r, "250 2.0.0") || strings.Contains(r, "injected") {
		t.Errorf("first reply in TLS: %q", r)
	}
	c.send("MAIL FROM:<x@example.net>\r\n")
	if r, _ := c.reply(); !strings.HasPrefix(r, "502") { // no EHLO after TLS yet: the injected one was dropped
		t.Errorf("MAIL after injected EHLO: %q", r)
	}
}
