package main

import (
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"testing"
)

// TestDeliverForward: a message to two forwarding names reaches both
// mailboxes' MX (the sink) with an SRS sender, and leaves the queue.
func TestDeliverForward(t *testing.T) {
	sk := startSink(t, "")
	_, port, _ := net.SplitHostPort(sk.Addr)
	resolver := dnsServer(t, map[string]string{"example.com": "127.0.0.1", "example.net": "127.0.0.1"})
	s := deliveryServer(t, resolver, port, "-metrics-addr", "127.0.0.1:0")
	needTools(t, "swaks")
	if code, out := s.swaks(s.mx, "--from", "sender@example.net", "--to", "din@example.org,bob@example.org"); code != 0 {
		t.Fatalf("swaks: %d\n%s", code, out)
	}
	waitFor(t, "two deliveries", func() bool { return len(sk.messages()) == 2 })
	all := strings.Join(sk.messages(), "")
	if !strings.Contains(all, "X-Rcpt-Args: <romain@example.com>") || !strings.Contains(all, "X-Rcpt-Args: <bob@example.net>") ||
		!strings.Contains(all, "X-Helo-Args: mx.example.org") || !strings.Contains(all, "by mx.example.org (Elit)") {
		t.Errorf("sink got:\n%s", all)
	}
	q := openQueue(t, s)
	waitFor(t, "an empty queue", func() bool { m, _ := q.List(); return len(m) == 0 })
	waitLog(t, s, "msg=delivered")

	// The metrics say so.
	addr := regexp.MustCompile(`msg="metrics listening" addr=(\S+)`).FindStringSubmatch(s.logText())
	if addr == nil {
		t.Fatalf("no metrics address in the log")
	}
	resp, err := http.Get("http://" + addr[1] + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`elit_deliveries_total{result="delivered"} 2`, `elit_received_messages_total{listener="mx"} 1`,
		"elit_queue_messages 0", "# TYPE elit_delivery_seconds_total counter"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q:\n%s", want, body)
		}
	}

	// The forwarded message's envelope sender is an SRS0 address at our
	// domain that encodes the original sender.
	m := srsRe.FindStringSubmatch(all)
	if m == nil || m[1] != "example.net" || m[2] != "sender" {
		t.Fatalf("no SRS sender in:\n%s", all)
	}
	srsAddr := m[0]
	// A bounce to it goes back to the original sender; a forged one is refused.
	c := dialRaw(t, s.mx)
	c.send("EHLO mx.example.com\r\nMAIL FROM:<>\r\nRCPT TO:<" + strings.Replace(srsAddr, "=sender@", "=mallory@", 1) + ">\r\n")
	c.expect("250")
	c.expect("250")
	c.expect("550 5.1.1")
	c.send("RCPT TO:<" + srsAddr + ">\r\nDATA\r\n")
	c.expect("250")
	c.expect("354")
	c.send("Subject: bounce\r\n\r\nreturned\r\n.\r\n")
	c.expect("250")
	waitFor(t, "the bounce at the original sender", func() bool { return len(sk.messages()) == 3 })
	if last := sk.messages()[2]; !strings.Contains(last, "X-Mail-Args: <>") || !strings.Contains(last, "X-Rcpt-Args: <sender@example.net>") {
		t.Errorf("bounce forwarded as:\n%s", last)
	}
}

var srsRe = regexp.MustCompile(`SRS0=[A-Z2-7]{13}=[A-Z2-7]{2}=([^=]+)=([^@]+)@example\.org`)

// TestDeliverRetry: a destination answering 4xx twice gets the message on
// the third attempt.
func TestDeliverRetry(t *testing.T) {
	sk := startSink(t, "", "-r", "RCPT")
	_, port, _ := net.SplitHostPort(sk.Addr)
	resolver := dnsServer(t, map[string]string{"example.com": "127.0.0.1"})
	// Retries 1 s then 2 s apart: time to swap the sinks in between.
	s := deliveryServer(t, resolver, port, "-retry-first", "1s", "-retry-max", "2s")
	c := mxData(t, s.mx, "<x@example.net>", "<din@example.org>")
	c.send("Subject: retry\r\n\r\nhello\r\n.\r\n")
	id := queued(c.expect("250"))[0]
	q := openQueue(t, s)
	waitFor(t, "two attempts", func() bool {
		m, err := q.Get(id)
		return err == nil && m.Recipients[0].Attempts >= 2
	})
	sk.Stop()
	m, _ := q.Get(id)
	if m.Recipients[0].Attempts != 2 || !strings.Contains(m.Recipients[0].LastError, "said at RCPT: 4") {
		t.Fatalf("after two attempts: %+v", m.Recipients[0])
	}
	sk2 := startSink(t, sk.Addr)
	waitFor(t, "the third attempt", func() bool { return len(sk2.messages()) == 1 })
	waitFor(t, "an empty queue", func() bool { m, _ := q.List(); return len(m) == 0 })
	if !strings.Contains(s.logText(), "attempt=3") {
		t.Errorf("not delivered at the third attempt:\n%s", s.logText())
	}
}
