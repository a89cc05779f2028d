package main

import (
	"net"
	"strings"
	"testing"
	"time"
)

// TestDeliver8BitMIME: a peer without 8BITMIME gets 7-bit messages, and an
// 8-bit message fails (RFC 6152 §3: convert or return) instead of going
// out broken.
func TestDeliver8BitMIME(t *testing.T) {
	sk := startSink(t, "", "-8")
	_, port, _ := net.SplitHostPort(sk.Addr)
	resolver := dnsServer(t, map[string]string{"example.com": "127.0.0.1"})
	s := deliveryServer(t, resolver, port)
	send := func(body string) {
		c := mxData(t, s.mx, "<> BODY=8BITMIME", "<din@example.org>")
		c.send("Subject: 8bit\r\n\r\n" + body + "\r\n.\r\n")
		c.expect("250")
	}
	send("plain ascii")
	send("caf\xc3\xa9")
	waitFor(t, "the ASCII message", func() bool { return len(sk.messages()) == 1 })
	waitLog(t, s, "5.6.3")
	if strings.Contains(sk.messages()[0], "caf") {
		t.Errorf("the 8-bit message went out")
	}
}

// TestDeliverDotStuffing: lines starting with a dot arrive intact, with
// and without PIPELINING at the peer (smtp-sink -p; its dump has LF line
// ends); CHUNKING (BDAT) is
// covered by the relay test, whose peer is Elit.
func TestDeliverDotStuffing(t *testing.T) {
	for _, args := range [][]string{nil, {"-p"}} {
		sk := startSink(t, "", args...)
		_, port, _ := net.SplitHostPort(sk.Addr)
		resolver := dnsServer(t, map[string]string{"example.com": "127.0.0.1"})
		s := deliveryServer(t, resolver, port)
		c := mxData(t, s.mx, "<>", "<din@example.org>")
		c.send("Subject: dots\r\n\r\n..one dot\r\n...two dots\r\nend\r\n.\r\n")
		c.expect("250")
		waitFor(t, "the message", func() bool { return len(sk.messages()) == 1 })
		if got := sk.messages()[0]; !strings.Contains(got, "\n.one dot\n..two dots\nend\n") {
			t.Errorf("sink %v got:\n%q", args, got)
		}
	}
}

// TestDeliverRelayedNotice: NOTIFY=SUCCESS to a peer without DSN gets a
// "relayed" DSN (RFC 3461 §6.2.2); to a peer with DSN, NOTIFY is passed on.
func TestDeliverRelayedNotice(t *testing.T) {
	noDSN := startSink(t, "")
	_, port, _ := net.SplitHostPort(noDSN.Addr)
	resolver := dnsServer(t, map[string]string{"example.com": "127.0.0.1", "example.net": "127.0.0.1"})
	s := deliveryServer(t, resolver, port)
	c := mxData(t, s.mx, "<sender@example.net>", "<din@example.org> NOTIFY=SUCCESS,FAILURE")
	c.send("Subject: tell me\r\n\r\nhello\r\n.\r\n")
	c.expect("250")
	// smtp-sink announces DSN: NOTIFY goes on, no notice from us.
	waitFor(t, "the message", func() bool { return len(noDSN.messages()) == 1 })
	if !strings.Contains(noDSN.messages()[0], "X-Rcpt-Args: <romain@example.com> NOTIFY=SUCCESS,FAILURE") {
		t.Errorf("NOTIFY not passed on:\n%s", noDSN.messages()[0])
	}
	time.Sleep(300 * time.Millisecond)
	if n := len(noDSN.messages()); n != 1 {
		t.Errorf("%d messages, want no notice", n)
	}

	// A peer without ESMTP (smtp-sink -e: EHLO refused, HELO taken): the
	// message goes, and the sender gets a "relayed" notice.
	noDSN.Stop()
	plain := startSink(t, noDSN.Addr, "-e")
	c = mxData(t, s.mx, "<sender@example.net>", "<din@example.org> NOTIFY=SUCCESS")
	c.send("Subject: tell me again\r\n\r\nhello\r\n.\r\n")
	c.expect("250")
	waitFor(t, "the message and the notice", func() bool { return len(plain.messages()) == 2 })
	notice := plain.messages()[1]
	if !strings.Contains(notice, "X-Rcpt-Args: <sender@example.net>") || !strings.Contains(notice, "Action: relayed") || !strings.Contains(notice, "Status: 2.0.0") {
		t.Errorf("notice:\n%s", notice)
	}
}
