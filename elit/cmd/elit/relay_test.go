package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeConfig writes a JSON config file for -config.
func writeConfig(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestDeliverSubmissionRelay: elit A relays din's mail through elit B's
// submission ports with SASL (the strongest mechanism B offers, then a
// configured one over implicit TLS); B delivers to the sink.
func TestDeliverSubmissionRelay(t *testing.T) {
	needTools(t, "swaks")
	sk := startSink(t, "")
	b := startServer(t, "-deliver=true", "-smarthost", sk.Addr)
	for _, tr := range []map[string]any{
		{"type": "submission", "host": b.sub, "user": "din", "password": dinPassword, "ca-file": b.cert},
		{"type": "submission", "host": b.subs, "tls": "implicit", "user": "din", "password": dinPassword, "ca-file": b.cert, "mechanism": "CRAM-MD5"},
	} {
		before := len(sk.messages())
		cfg := writeConfig(t, map[string]any{
			"transports": map[string]any{"relay": tr},
			"routes":     []map[string]any{{"user": "din", "transport": "relay"}},
		})
		a := startServer(t, "-deliver=true", "-config", cfg, "-resolver", "127.0.0.1:1")
		code, out := a.swaks(a.subs, "--tls-on-connect", "--auth", "PLAIN", "--auth-user", "din", "--auth-password", dinPassword,
			"--from", "din@example.org", "--to", "friend@example.com", "--header", "From: din@example.org")
		if code != 0 {
			t.Fatalf("swaks: %d\n%s", code, out)
		}
		waitFor(t, "the relayed message", func() bool { return len(sk.messages()) == before+1 })
		got := sk.messages()[before]
		if !strings.Contains(got, "X-Mail-Args: <din@example.org>") || !strings.Contains(got, "X-Rcpt-Args: <friend@example.com>") ||
			strings.Count(got, "(Elit) with ESMTPSA") != 2 {
			t.Errorf("at the sink:\n%s", got)
		}
		want := "mechanism=SCRAM-SHA-256"
		if tr["mechanism"] != nil {
			want = "mechanism=CRAM-MD5"
		}
		waitLog(t, b, want)
		waitLog(t, a, "transport=relay")
	}
}

// TestDeliverSOCKS5: a route sends mail for one domain directly, but
// through a SOCKS5 proxy on loopback.
func TestDeliverSOCKS5(t *testing.T) {
	sk := startSink(t, "")
	_, port, _ := net.SplitHostPort(sk.Addr)
	resolver := dnsServer(t, map[string]string{"example.com": "127.0.0.1", "example.net": "127.0.0.1"})
	proxyAddr, seen := socks5Server(t)
	cfg := writeConfig(t, map[string]any{
		"transports": map[string]any{"socks": map[string]any{"type": "direct", "socks5": proxyAddr}},
		"routes":     []map[string]any{{"to-domains": []string{"example.com"}, "transport": "socks"}},
	})
	s := deliveryServer(t, resolver, port, "-config", cfg)
	c := mxData(t, s.mx, "<x@example.net>", "<din@example.org>")
	c.send("Subject: via socks\r\n\r\nhello\r\n.\r\n")
	c.expect("250")
	waitFor(t, "the message", func() bool { return len(sk.messages()) == 1 })
	if got := <-seen; got != "127.0.0.1:"+port {
		t.Errorf("the proxy was asked for %q", got)
	}
	waitLog(t, s, "transport=socks")
}

// socks5Server is a minimal SOCKS5 proxy (RFC 1928: no authentication,
// CONNECT to IPv4 addresses only), reporting each destination.
func socks5Server(t *testing.T) (string, <-chan string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	seen := make(chan string, 10)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 262)
				if _, err := io.ReadFull(c, buf[:2]); err != nil || buf[0] != 5 {
					return
				}
				io.ReadFull(c, buf[:buf[1]])
				c.Write([]byte{5, 0})
				if _, err := io.ReadFull(c, buf[:4]); err != nil || buf[1] != 1 || buf[3] != 1 {
					c.Write([]byte{5, 8, 0, 1, 0, 0, 0, 0, 0, 0})
					return
				}
				io.ReadFull(c, buf[:6])
				dst := fmt.Sprintf("%d.%d.%d.%d:%d", buf[0], buf[1], buf[2], buf[3], int(buf[4])<<8|int(buf[5]))
				up, err := net.Dial("tcp", dst)
				if err != nil || !strings.HasPrefix(dst, "127.") {
					c.Write([]byte{5, 5, 0, 1, 0, 0, 0, 0, 0, 0})
					return
				}
				defer up.Close()
				seen <- dst
				c.Write([]byte{5, 0, 0, 1, 0, 0, 0, 0, 0, 0})
				go io.Copy(up, c)
				io.Copy(c, up)
			}()
		}
	}()
	return l.Addr().String(), seen
}
