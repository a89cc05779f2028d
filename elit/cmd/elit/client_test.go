package main

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
)

// rawClient speaks SMTP byte by byte.
type rawClient struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *rawClient {
	t.Helper()
	rc := dialNoGreeting(t, addr)
	rc.expect("220")
	return rc
}

// mxData connects to addr and sends EHLO, MAIL FROM:from, RCPT TO:to and
// DATA in one pipelined group (from and to may carry parameters); it
// returns the client after the 354, ready for the message.
func mxData(t *testing.T, addr, from, to string) *rawClient {
	t.Helper()
	c := dialRaw(t, addr)
	c.send("EHLO client.example.net\r\nMAIL FROM:" + from + "\r\nRCPT TO:" + to + "\r\nDATA\r\n")
	c.expect("250")
	c.expect("250")
	c.expect("250")
	c.expect("354")
	return c
}

// dialRawTLS connects to the implicit-TLS port.
func dialRawTLS(t *testing.T, s *proc) *rawClient {
	t.Helper()
	rc := dialNoGreeting(t, s.subs)
	rc.tlsUp(s.cert)
	rc.expect("220")
	return rc
}

func dialNoGreeting(t *testing.T, addr string) *rawClient {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(60 * time.Second))
	t.Cleanup(func() { c.Close() })
	return &rawClient{t: t, conn: c, r: bufio.NewReader(c)}
}

func (c *rawClient) send(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c.conn, s); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// reply reads one (possibly multi-line) reply and returns it whole.
func (c *rawClient) reply() (string, error) {
	var b strings.Builder
	for {
		line, err := c.r.ReadString('\n')
		b.WriteString(line)
		if err != nil {
			return b.String(), err
		}
		if len(line) < 4 || line[3] != '-' {
			return b.String(), nil
		}
	}
}

func (c *rawClient) expect(prefix string) string {
	c.t.Helper()
	r, err := c.reply()
	if err != nil || !strings.HasPrefix(r, prefix) {
		c.t.Fatalf("want %s, got %q (%v)", prefix, r, err)
	}
	return r
}

func (c *rawClient) startTLS(cert string) {
	c.t.Helper()
	c.send("STARTTLS\r\n")
	c.expect("220")
	c.tlsUp(cert)
}

func (c *rawClient) tlsUp(cert string) {
	c.t.Helper()
	pool := x509.NewCertPool()
	pem, _ := os.ReadFile(cert)
	pool.AppendCertsFromPEM(pem)
	tc := tls.Client(c.conn, &tls.Config{ServerName: "mx.example.org", RootCAs: pool})
	if err := tc.Handshake(); err != nil {
		c.t.Fatalf("TLS: %v", err)
	}
	c.conn = tc
	c.r = bufio.NewReader(tc)
}

var queuedRe = regexp.MustCompile(`Queued as (\S+)`)

// queued returns the queue IDs in a transcript.
func queued(s string) []string {
	var ids []string
	for _, m := range queuedRe.FindAllStringSubmatch(s, -1) {
		ids = append(ids, m[1])
	}
	return ids
}
