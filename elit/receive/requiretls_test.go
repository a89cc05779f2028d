package receive

import (
	"bufio"
	"crypto/tls"
	"strings"
	"testing"

	"elit.local/elit/queue"
)

// TestREQUIRETLS: REQUIRETLS (RFC 8689) is offered only inside TLS, on
// the MX and on submission; MAIL with it in plaintext gets 530 5.7.10,
// inside TLS the message is queued tagged with it and our Received field
// says so; a "TLS-Required: No" header field is kept as the message's
// tag, alongside REQUIRETLS (which wins at delivery); with NoREQUIRETLS
// nothing is offered and the parameter is refused.
func TestREQUIRETLS(t *testing.T) {
	for _, c := range []struct {
		name   string
		mode   Mode
		off    bool
		header string
		// want: the message's tags
		requireTLS, tlsNo bool
	}{
		{name: "mx", mode: MX, requireTLS: true},
		{name: "mx, TLS-Required: No", mode: MX, header: "TLS-Required: no\r\n", requireTLS: true, tlsNo: true},
		{name: "submission", mode: Submission, requireTLS: true},
		{name: "off", mode: MX, off: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			addr, q := testServer(t, c.mode, func(cfg *Config) {
				cfg.TLS = testTLSConfig(t)
				cfg.NoREQUIRETLS = c.off
			})
			cl := dial(t, addr)
			cl.cmd("", "220")
			if r := cl.cmd("EHLO client.example", "250"); strings.Contains(r, "REQUIRETLS") {
				t.Errorf("REQUIRETLS offered before TLS: %q", r)
			}
			if c.mode == MX && !c.off {
				cl.cmd("MAIL FROM:<s@example.net> REQUIRETLS", "530 5.7.10")
			}
			cl.cmd("STARTTLS", "220")
			tc := tls.Client(cl.c, &tls.Config{InsecureSkipVerify: true})
			cl.c, cl.r = tc, bufio.NewReader(tc)
			ehlo := cl.cmd("EHLO client.example", "250")
			if strings.Contains(ehlo, "REQUIRETLS") == c.off {
				t.Errorf("EHLO in TLS (REQUIRETLS off %v): %q", c.off, ehlo)
			}
			from := "s@example.net"
			if c.mode == Submission {
				cl.cmd("AUTH PLAIN AGRpbgBkZW1v", "235") // din, demo
				from = "din@example.org"
			}
			if c.off {
				cl.cmd("MAIL FROM:<"+from+"> REQUIRETLS", "504")
				return
			}
			cl.cmd("MAIL FROM:<"+from+"> REQUIRETLS", "250")
			cl.cmd("RCPT TO:<din@example.org>", "250")
			cl.cmd("DATA", "354")
			cl.cmd("From: <"+from+">\r\n"+c.header+"Subject: secret\r\n\r\nbody\r\n.", "250")
			m := onlyMessage(t, q)
			if m.RequireTLS != c.requireTLS || m.TLSRequiredNo != c.tlsNo {
				t.Errorf("queued with requiretls %v, tls-required-no %v; want %v, %v", m.RequireTLS, m.TLSRequiredNo, c.requireTLS, c.tlsNo)
			}
			if !strings.Contains(m.Header, "; REQUIRETLS)") {
				t.Errorf("our Received field does not say REQUIRETLS:\n%s", m.Header)
			}
		})
	}
}

// TestTLSRequiredNoHeader: the header field is read as RFC 8689 §3
// writes it: "No" in any case; any other value, or one field of several
// saying otherwise, is no request.
func TestTLSRequiredNoHeader(t *testing.T) {
	for _, c := range []struct {
		header string
		want   bool
	}{
		{"TLS-Required: No\r\n", true},
		{"tls-required:   NO  \r\n", true},
		{"TLS-Required: No\r\nTLS-Required: no\r\n", true},
		{"TLS-Required: No\r\nTLS-Required: yes\r\n", false},
		{"TLS-Required: maybe\r\n", false},
		{"X-TLS-Required: No\r\n", false},
		{"", false},
	} {
		s := newScanner()
		s.Write([]byte("From: a@example.org\r\n" + c.header + "\r\nbody\r\n"))
		if err := s.close(); err != nil {
			t.Fatal(err)
		}
		if got := tlsRequiredNo(s.fields); got != c.want {
			t.Errorf("%q: %v, want %v", c.header, got, c.want)
		}
	}
}

// onlyMessage is the one message in q.
func onlyMessage(t *testing.T, q *queue.Store) *queue.Message {
	t.Helper()
	msgs, err := q.List()
	if err != nil || len(msgs) != 1 {
		t.Fatalf("%d messages queued (%v), want 1", len(msgs), err)
	}
	return msgs[0]
}
