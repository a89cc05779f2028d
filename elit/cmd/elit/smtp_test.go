package main

import (
	"fmt"
	"io"
	"strings"
	"testing"
)

// TestServePipelining sends 10 messages in one connection, each
// MAIL/RCPT/DATA group in one write and each message's end in the same
// write as the next group (RFC 2920).
func TestServePipelining(t *testing.T) {
	s := startServer(t)
	c := dialRaw(t, s.mx)
	c.send("EHLO client.example.net\r\n")
	if r := c.expect("250"); !strings.Contains(r, "PIPELINING") {
		t.Fatalf("no PIPELINING: %q", r)
	}
	group := "MAIL FROM:<x@example.net>\r\nRCPT TO:<din@example.org>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n"
	c.send(group)
	var ids []string
	for i := range 10 {
		c.expect("250")
		c.expect("250")
		c.expect("250")
		c.expect("354")
		body := fmt.Sprintf("Subject: %d\r\n\r\nmessage %d\r\n.\r\n", i, i)
		if i < 9 {
			body += group
		} else {
			body += "QUIT\r\n"
		}
		c.send(body)
		ids = append(ids, queued(c.expect("250 2.0.0"))...)
	}
	c.expect("221")
	if len(ids) != 10 {
		t.Fatalf("%d queued", len(ids))
	}
	q := openQueue(t, s)
	for i, id := range ids {
		f, err := q.Data(id)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(f)
		f.Close()
		if !strings.HasSuffix(string(b), fmt.Sprintf("\r\n\r\nmessage %d\r\n", i)) {
			t.Errorf("message %d: %q", i, b)
		}
	}
}

// TestServeSize: SIZE over the limit is refused at MAIL, and a message
// over it at the end of DATA, both with 552.
func TestServeSize(t *testing.T) {
	needTools(t, "swaks")
	s := startServer(t, "-max-size", "20000")
	big := strings.Repeat("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\r\n", 500)
	code, out := s.swaks(s.mx, "--from", "x@example.net", "--to", "din@example.org", "--body", big)
	if code == 0 || !strings.Contains(out, "552 5.3.4") || len(queued(out)) != 0 {
		t.Errorf("oversized message: exit %d\n%.2000s", code, out)
	}
	c := dialRaw(t, s.mx)
	c.send("EHLO client.example.net\r\nMAIL FROM:<x@example.net> SIZE=30000\r\n")
	if r := c.expect("250"); !strings.Contains(r, "SIZE 20000") {
		t.Errorf("EHLO: %q", r)
	}
	c.expect("552")
	// The connection still works.
	c.send("MAIL FROM:<x@example.net> SIZE=100\r\nRCPT TO:<din@example.org>\r\nDATA\r\n")
	c.expect("250")
	c.expect("250")
	c.expect("354")
	c.send("Subject: small\r\n\r\nok\r\n.\r\n")
	c.expect("250 2.0.0 Queued")
}

// TestServeBadInput: garbage, long lines and odd commands get errors, the
// server stays up.
func TestServeBadInput(t *testing.T) {
	s := startServer(t)
	c := dialRaw(t, s.mx)
	c.send("\x00\x01\xff garbage\r\n")
	c.expect("5")
	c.send("MAIL FROM:<x@example.net>\r\n") // before EHLO
	c.expect("5")
	c.send("EHLO client.example.net\r\nMAIL FROM:<<<@>>>\r\n")
	c.expect("250")
	c.expect("5")
	c.send("MAIL FROM:<x@example.net>\r\nRCPT TO:<\"unterminated@example.org>\r\n")
	c.expect("250")
	c.expect("5")
	c = dialRaw(t, s.mx)
	c.send("EHLO " + strings.Repeat("a", 10000) + "\r\n")
	c.expect("500")
	c = mxData(t, s.mx, "<x@example.net>", "<din@example.org>")
	c.send("Subject: long\r\n\r\n" + strings.Repeat("x", 5000) + "\r\n.\r\n")
	if r, _ := c.reply(); !strings.HasPrefix(r, "5") {
		t.Errorf("over-long data line: %q", r)
	}
	c = dialRaw(t, s.mx) // still up
	c.send("QUIT\r\n")
	c.expect("221")
}
