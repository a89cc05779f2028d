package main

import (
	"net"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestDeliverBounce: a 550 at the destination produces a DSN to the
// sender, which Python's email package reads as a delivery report. The
// destination's MX is 127.0.0.2 (a sink refusing every RCPT), the
// sender's 127.0.0.1 (a sink taking everything), on the same port.
func TestDeliverBounce(t *testing.T) {
	needTools(t, "python3")
	good := startSink(t, "")
	_, port, _ := net.SplitHostPort(good.Addr)
	startSink(t, "127.0.0.2:"+port, "-f", "RCPT")
	resolver := dnsServer(t, map[string]string{"example.com": "127.0.0.2", "example.net": "127.0.0.1"})
	s := deliveryServer(t, resolver, port)
	c := mxData(t, s.mx, "<sender@example.net> RET=HDRS ENVID=env42", "<din@example.org> NOTIFY=FAILURE ORCPT=rfc822;din@example.org")
	c.send("From: sender@example.net\r\nSubject: will bounce\r\nMessage-ID: <orig@example.net>\r\n\r\nsecret body\r\n.\r\n")
	c.expect("250")
	waitFor(t, "the bounce", func() bool { return len(good.messages()) == 1 })
	dump := good.messages()[0]
	if !strings.Contains(dump, "X-Mail-Args: <>") || !strings.Contains(dump, "X-Rcpt-Args: <sender@example.net>") {
		t.Fatalf("bounce envelope:\n%s", dump)
	}
	// The message starts after smtp-sink's X- lines.
	msg := dump[strings.Index(dump, "\nReceived: ")+1:]
	py := `
import email, sys
m = email.message_from_string(sys.stdin.read())
assert m.get_content_type() == "multipart/report", m.get_content_type()
assert m.get_param("report-type") == "delivery-status"
parts = m.get_payload()
assert parts[1].get_content_type() == "message/delivery-status"
blocks = parts[1].get_payload()
per_msg, per_rcpt = blocks[0], blocks[1]
assert per_msg["Original-Envelope-Id"] == "env42", per_msg.items()
assert per_rcpt["Action"] == "failed"
assert per_rcpt["Status"].startswith("5."), per_rcpt["Status"]
assert per_rcpt["Final-Recipient"] == "rfc822;romain@example.com"
assert per_rcpt["Original-Recipient"] == "rfc822;din@example.org"
assert per_rcpt["Remote-MTA"] == "dns; mx.example.com"
assert per_rcpt["Diagnostic-Code"].startswith("smtp; 5")
assert parts[2].get_content_type() == "text/rfc822-headers"
assert "orig@example.net" in parts[2].get_payload()
assert "secret body" not in m.as_string()
print("ok", per_rcpt["Status"], per_rcpt["Diagnostic-Code"])
`
	code, out := runTool(t, msg, "python3", "-c", py)
	if code != 0 {
		t.Fatalf("python's email package on the DSN: %s\n%s", out, msg)
	}
	t.Log(strings.TrimSpace(out))
	q := openQueue(t, s)
	waitFor(t, "an empty queue", func() bool { m, _ := q.List(); return len(m) == 0 })
}

// TestDeliverList: list mail goes out with each member's bounce address;
// a member whose MX refuses is counted as a bounce of the list (no DSN to
// the sender), and a bounce sent to a member's address is counted too.
func TestDeliverList(t *testing.T) {
	good := startSink(t, "")
	_, port, _ := net.SplitHostPort(good.Addr)
	startSink(t, "127.0.0.2:"+port, "-f", "RCPT")
	resolver := dnsServer(t, map[string]string{"example.com": "127.0.0.2", "example.net": "127.0.0.1"})
	s := deliveryServer(t, resolver, port)
	needTools(t, "swaks")
	if code, out := s.swaks(s.mx, "--from", "sender@example.net", "--to", "team@example.org"); code != 0 {
		t.Fatalf("swaks: %d\n%s", code, out)
	}
	for i := 0; len(good.messages()) != 1; i++ {
		if i == 200 {
			t.Fatalf("no delivery to hannes:\n%s", s.logText())
		}
		time.Sleep(50 * time.Millisecond)
	}
	got := good.messages()[0]
	bounceAddr := bounceRe.FindString(got)
	if bounceAddr == "" || !strings.Contains(got, "X-Rcpt-Args: <hannes@example.net>") {
		t.Fatalf("at hannes's MX:\n%s", got)
	}
	q := openQueue(t, s)
	waitFor(t, "an empty queue", func() bool { m, _ := q.List(); return len(m) == 0 })
	// A bounce arrives for hannes; the unsigned form of the address, or
	// one signed for someone else, is refused.
	c := dialRaw(t, s.mx)
	c.send("EHLO mx.example.net\r\nMAIL FROM:<>\r\nRCPT TO:<team+bounces=hannes=example.net@example.org>\r\n" +
		"RCPT TO:<" + strings.Replace(bounceAddr, "=hannes=", "=mallory=", 1) + ">\r\nRCPT TO:<" + bounceAddr + ">\r\nDATA\r\n")
	c.expect("250")
	c.expect("250")
	c.expect("550 5.1.1")
	c.expect("550 5.1.1")
	c.expect("250")
	c.expect("354")
	c.send("Subject: Undelivered\r\n\r\nmailbox full\r\n.\r\n")
	c.expect("250 2.0.0 Bounce recorded")
	code, out := runTool(t, "", elitBinary(t), "lists", "-state", s.state)
	if code != 0 || !strings.Contains(out, "team@example.org  romain@example.com  1 bounces") ||
		!strings.Contains(out, "team@example.org  hannes@example.net  1 bounces") {
		t.Errorf("elit lists: %d\n%s", code, out)
	}
	if len(good.messages()) != 1 {
		t.Errorf("something was sent to the sender: %d messages at example.net", len(good.messages()))
	}
}

// bounceRe is the signed bounce address of hannes in the list team.
var bounceRe = regexp.MustCompile(`team\+bounces=[A-Z2-7]{13}=hannes=example\.net@example\.org`)
