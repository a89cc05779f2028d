package smtpclient

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"elit.local/elit/internal/testlib"
)

// A scripted peer is the server side of a session on loopback, driven by
// a script, one directive a line:
//
//	S: 250 ok          the peer writes "250 ok\r\n"
//	S: "250 o"         the peer writes the Go-quoted bytes as they are
//	C: MAIL FROM:<a>   the peer reads a line and it must be "MAIL FROM:<a>\r\n"
//	C: "abc"           the peer reads len("abc") bytes and they must be these
//	B: 1234            the peer reads 1234 bytes, kept in its data
//	tls                the peer does the server side of a TLS handshake
//	tlsfail            the same, which the client must break off (the end)
//	close              the peer closes the connection
//	stall              the peer says nothing more until the client closes
//
// A peer reads everything its script does not before writing the next
// reply, so a script that wants several commands before any reply proves
// that they came in one group (pipelining): a client that waited for a
// reply in between would time out. At the end of the script the peer
// waits for the client to close and fails on anything more it sends.
type peer struct {
	conn net.Conn // the client's side
	done chan error

	mu   sync.Mutex
	data []byte // what B: directives read
}

// newPeer starts a peer with script and returns it with the client's
// connection to it; the test fails if the peer's script fails.
func newPeer(t *testing.T, script string) *peer {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &peer{done: make(chan error, 1)}
	go func() {
		c, err := l.Accept()
		l.Close()
		if err != nil {
			p.done <- err
			return
		}
		defer c.Close()
		p.done <- p.run(c, script)
	}()
	if p.conn, err = net.Dial("tcp", l.Addr().String()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.conn.Close() })
	return p
}

// wait returns the peer's verdict, once the client closed.
func (p *peer) wait(t *testing.T) {
	t.Helper()
	select {
	case err := <-p.done:
		if err != nil {
			t.Error(err)
		}
	case <-time.After(10 * time.Second):
		t.Error("the peer's script did not end")
	}
}

func (p *peer) received() []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.data
}

func (p *peer) run(c net.Conn, script string) error {
	r := bufio.NewReader(c)
	for n, line := range strings.Split(strings.TrimSpace(script), "\n") {
		line = strings.TrimLeft(line, " \t")
		if line == "" {
			continue
		}
		kind, arg, _ := strings.Cut(line, " ")
		raw, quoted := arg, false
		if strings.HasPrefix(arg, `"`) {
			s, err := strconv.Unquote(arg)
			if err != nil {
				return fmt.Errorf("script line %d: %v", n+1, err)
			}
			raw, quoted = s, true
		}
		switch kind {
		case "S:":
			if !quoted {
				raw += "\r\n"
			}
			if _, err := io.WriteString(c, raw); err != nil {
				return fmt.Errorf("script line %d: %v", n+1, err)
			}
		case "C:":
			var got string
			var err error
			if quoted {
				b := make([]byte, len(raw))
				_, err = io.ReadFull(r, b)
				got = string(b)
			} else {
				raw += "\r\n"
				got, err = r.ReadString('\n')
			}
			if err != nil || got != raw {
				return fmt.Errorf("script line %d: got %q (%v), want %q", n+1, got, err, raw)
			}
		case "B:":
			size, _ := strconv.Atoi(arg)
			b := make([]byte, size)
			if _, err := io.ReadFull(r, b); err != nil {
				return fmt.Errorf("script line %d: %v", n+1, err)
			}
			p.mu.Lock()
			p.data = append(p.data, b...)
			p.mu.Unlock()
		case "tls":
			tc := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{testCert()}})
			if err := tc.Handshake(); err != nil {
				return fmt.Errorf("script line %d: %v", n+1, err)
			}
			c, r = tc, bufio.NewReader(tc)
		case "tlsfail":
			if err := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{testCert()}}).Handshake(); err == nil {
				return fmt.Errorf("script line %d: the client accepted the handshake", n+1)
			}
			return nil
		case "close":
			return nil
		case "stall":
			io.Copy(io.Discard, r)
			return nil
		default:
			return fmt.Errorf("script line %d: %q?", n+1, line)
		}
	}
	rest, _ := io.ReadAll(r)
	if len(rest) > 0 {
		return fmt.Errorf("the client sent more than the script says: %q", rest)
	}
	return nil
}

// testCert is a self-signed certificate for mx.example.com.
func testCert() tls.Certificate {
	cert, _ := testlib.Certificate("mx.example.com")
	return cert
}

// client starts a Client on p's connection with a short step timeout (a
// client that waits for a reply the script does not give fails soon).
func (p *peer) client(ctx context.Context) *Client {
	return New(ctx, p.conn, 3*time.Second)
}

// session starts a peer with script, which begins with the greeting and
// EHLO, and a client that has said Hello.
func session(t *testing.T, script string) (*peer, *Client) {
	t.Helper()
	p := newPeer(t, script)
	c := p.client(context.Background())
	if err := c.Hello("client.example.org"); err != nil {
		t.Fatal(err)
	}
	return p, c
}
