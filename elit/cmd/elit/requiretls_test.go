package main

import (
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"elit.local/elit/queue"
	"elit.local/elit/tlsrpt"
)

// TestRequireTLS, end to end with Postfix's smtp-sink as the
// destinations' MX (it offers neither STARTTLS nor REQUIRETLS; it
// soft-rejects every RCPT, so that what is queued stays): the MX refuses
// REQUIRETLS in plaintext and takes it inside TLS, its Received field
// saying so; a REQUIRETLS message, with no MTA-STS or DANE policy to
// verify the destination, fails with 5.7.30 and its sender gets a
// REQUIRETLS DSN with the header only; a "TLS-Required: No" message is
// tagged so; the operator turns the tag off and REQUIRETLS on with elit
// queue, through the running server, and the message bounces at the
// retry; elit queue destinations shows what the sink offered.
func TestRequireTLS(t *testing.T) {
	sk := startSink(t, "", "-r", "RCPT")
	_, port, _ := net.SplitHostPort(sk.Addr)
	resolver := dnsServer(t, map[string]string{"example.com": "127.0.0.1", "example.net": "127.0.0.1"})
	s := deliveryServer(t, resolver, port, "-retry-first", "1h", "-retry-max", "2h")
	q := openQueue(t, s)
	elit := func(args ...string) string { t.Helper(); return elitQueue(t, s.state, args...) }

	// REQUIRETLS: refused in plaintext, taken in TLS.
	c := dialRaw(t, s.mx)
	c.send("EHLO client.example.net\r\n")
	if r := c.expect("250"); strings.Contains(r, "REQUIRETLS") {
		t.Errorf("REQUIRETLS offered in plaintext: %q", r)
	}
	c.send("MAIL FROM:<sender@example.net> REQUIRETLS\r\n")
	c.expect("530 5.7.10")
	c.startTLS(s.cert)
	c.send("EHLO client.example.net\r\n")
	if r := c.expect("250"); !strings.Contains(r, "REQUIRETLS") {
		t.Errorf("REQUIRETLS not offered in TLS: %q", r)
	}
	c.send("MAIL FROM:<sender@example.net> REQUIRETLS RET=FULL\r\nRCPT TO:<din@example.org>\r\nDATA\r\n")
	c.expect("250")
	c.expect("250")
	c.expect("354")
	c.send("From: <sender@example.net>\r\nSubject: secret\r\n\r\nthe secret body\r\n.\r\n")
	id := queued(c.expect("250"))[0]
	waitLog(t, s, "5.7.30 REQUIRETLS: no MTA-STS policy in mode enforce nor DANE authenticates mx.example.com")
	waitLog(t, s, "bounce queued")
	dsn := onlyDSN(t, q, "sender@example.net")
	if !dsn.m.RequireTLS || !strings.Contains(dsn.data, "Status: 5.7.30") || !strings.Contains(dsn.data, "; REQUIRETLS)") ||
		!strings.Contains(dsn.data, "queued as "+id) || strings.Contains(dsn.data, "the secret body") {
		t.Errorf("the DSN (requiretls %v) is not REQUIRETLS, 5.7.30, with the header only:\n%s", dsn.m.RequireTLS, dsn.data)
	}
	q.Remove(dsn.m.ID)

	// TLS-Required: No, then the operator's changes.
	c = mxData(t, s.mx, "<sender@example.net>", "<din@example.org>")
	c.send("From: <sender@example.net>\r\nTLS-Required: No\r\nSubject: report\r\n\r\nhello\r\n.\r\n")
	id = queued(c.expect("250"))[0]
	get := func() *queue.Message {
		m, err := q.Get(id)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	waitFor(t, "the first attempt", func() bool { return get().Recipients[0].Attempts == 1 })
	if m := get(); !m.TLSRequiredNo || m.RequireTLS {
		t.Errorf("queued with tls-required-no %v, requiretls %v", m.TLSRequiredNo, m.RequireTLS)
	}
	if out := elit("list"); !strings.Contains(out, id) || !strings.Contains(out, "TLS-Required: No") {
		t.Errorf("list: %s", out)
	}
	if out := elit("tlsrequired", id, "yes"); !strings.Contains(out, "tlsrequired-yes "+id+": 1 recipients") || get().TLSRequiredNo {
		t.Errorf("tlsrequired yes: %s", out)
	}
	if out := elit("requiretls", id, "on"); !strings.Contains(out, "1 recipients") || !get().RequireTLS {
		t.Errorf("requiretls on: %s", out)
	}
	if code, out := runTool(t, "", elitBinary(t), "queue", "-state", s.state, "requiretls", id, "maybe"); code == 0 {
		t.Errorf("requiretls maybe: %s", out)
	}
	elit("retry", id)
	waitFor(t, "the bounce of the retry", func() bool { _, err := q.Get(id); return err != nil })
	onlyDSN(t, q, "sender@example.net")

	s.stop()
	if out := elit("destinations"); !strings.Contains(out, "example.com  host mx.example.com  starttls no  requiretls no") {
		t.Errorf("destinations: %s", out)
	}
}

// elitQueue runs elit queue on state, which must succeed, and returns
// its output.
func elitQueue(t *testing.T, state string, args ...string) string {
	t.Helper()
	code, out := runTool(t, "", elitBinary(t), append([]string{"queue", "-state", state}, args...)...)
	if code != 0 {
		t.Fatalf("elit queue %v: exit %d: %s", args, code, out)
	}
	return out
}

type queuedDSN struct {
	m    *queue.Message
	data string
}

// onlyDSN is the one DSN queued, to rcpt.
func onlyDSN(t *testing.T, q *queue.Store, rcpt string) queuedDSN {
	t.Helper()
	var found []queuedDSN
	waitFor(t, "the DSN", func() bool {
		msgs, _ := q.List()
		found = nil
		for _, m := range msgs {
			if m.From == "" && m.Recipients[0].Address == rcpt {
				f, err := q.Data(m.ID)
				if err != nil {
					continue
				}
				b, _ := io.ReadAll(f)
				f.Close()
				found = append(found, queuedDSN{m, string(b)})
			}
		}
		return len(found) > 0
	})
	if len(found) != 1 {
		t.Fatalf("%d DSNs queued to %s, want 1", len(found), rcpt)
	}
	return found[0]
}

// TestTLSReportReceived: a TLS report (Google's, from mox's test data)
// mailed to our reporting address is taken by the MX, not queued, and
// kept where the status page reads it; the log says what it reports.
func TestTLSReportReceived(t *testing.T) {
	eml, err := os.ReadFile("../../../../shared/oracles/tlsrpt/mox-example.eml")
	if err != nil {
		t.Fatal(err)
	}
	s := startServer(t)
	c := mxData(t, s.mx, "<reports@google.com>", "<tlsrpt@example.org>")
	var b strings.Builder
	for _, line := range strings.Split(strings.TrimRight(strings.ReplaceAll(string(eml), "\r\n", "\n"), "\n"), "\n") {
		if strings.HasPrefix(line, ".") {
			line = "." + line
		}
		b.WriteString(line + "\r\n")
	}
	c.send(b.String() + ".\r\n")
	c.expect("250 2.0.0 TLS report received")
	waitLog(t, s, "TLS report received")
	inbox, err := tlsrpt.OpenInbox(filepath.Join(s.state, "tlsrpt", "received.json"))
	if err != nil || len(inbox.List()) != 1 || inbox.Summaries()[0].Organization != "Google Inc." {
		t.Errorf("kept: %+v, %v", inbox.List(), err)
	}
	if msgs, _ := openQueue(t, s).List(); len(msgs) != 0 {
		t.Errorf("%d messages queued", len(msgs))
	}
}
