package receive

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"elit.local/elit/internal/abuse"
	"elit.local/elit/internal/testlib"
	"elit.local/elit/lists"
	"elit.local/elit/policy"
	"elit.local/elit/queue"
	"elit.local/elit/srs"
)

// The secret of the abuse tests' server, and what it signs.
var (
	abuseKey    = []byte("abuse test key, 32 bytes long...")
	abuseSRS    = &srs.SRS{Key: abuseKey, Domain: "example.org"}
	abuseSigner = lists.NewSigner(abuseKey)
)

// oldSRS makes the SRS address Elit made before its hash grew.
func oldSRS(to string) string { return abuse.OldSRS(abuseKey, "example.org", to, time.Now()) }

// abuseServer is the MX of the abuse cases: SRS and signed list bounce
// addresses on, the error limits given by mod (none by default).
func abuseServer(t *testing.T, mod func(*Config)) (string, *queue.Store, *bounceLog) {
	t.Helper()
	bl := &bounceLog{}
	addr, q := testServer(t, MX, func(c *Config) {
		c.Steps = testSteps(testDB(t), 50, func(r *policy.Route) {
			r.SRS = abuseSRS
			r.ListSigner = abuseSigner
			r.ListBounce = bl.record
			r.Postmaster = "din@example.org"
		})
		c.TLS = testTLSConfig(t)
		if mod != nil {
			mod(c)
		}
	})
	return addr, q, bl
}

type bounceLog struct {
	mu   sync.Mutex
	seen []string
}

func (b *bounceLog) record(list, member, reason string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.seen = append(b.seen, list+" "+member)
}

func (b *bounceLog) len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.seen)
}

// TestAbuse runs the abuse table (elit/internal/abuse: what an attacker,
// or a broken client, sends; the replies it must get; how many messages
// may be queued) against a fresh server a case.
func TestAbuse(t *testing.T) {
	cases := abuse.Cases(abuse.Server{Key: abuseKey, Domain: "example.org", User: "din@example.org",
		List: "team@example.org", Member: "h@example.net"})
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			addr, q, bl := abuseServer(t, nil)
			conn := dial(t, addr)
			conn.cmd("", "220")
			// Written while the replies are read: the server may stop
			// reading a long input.
			go io.WriteString(conn.c, c.Send)
			for i, w := range c.Want {
				r := conn.reply()
				if !strings.HasPrefix(r, w) {
					t.Fatalf("reply %d: %q, want %s", i, r, w)
				}
				if !abuse.PrintableASCII(r) {
					t.Errorf("reply %d is not printable ASCII: %q", i, r)
				}
			}
			io.WriteString(conn.c, c.Then)
			if c.Closed {
				conn.c.SetReadDeadline(time.Now().Add(10 * time.Second))
				// Closed, with nothing more said in SMTP (a TLS alert may come).
				if rest, err := io.ReadAll(conn.r); err != nil || bytes.Contains(rest, []byte("\r\n")) {
					t.Errorf("not closed: %q %v", rest, err)
				}
			}
			if msgs, _ := q.List(); len(msgs) != c.Queued {
				t.Errorf("%d messages queued, want %d", len(msgs), c.Queued)
			}
			if n := bl.len(); n != c.Bounces {
				t.Errorf("%d list bounces recorded, want %d", n, c.Bounces)
			}
		})
	}
}

// TestEHLOReply: our own name first (RFC 5321 §4.1.1.1), for EHLO and HELO.
func TestEHLOReply(t *testing.T) {
	addr, _, _ := abuseServer(t, nil)
	c := dial(t, addr)
	c.cmd("", "220 mx.example.org")
	if r := c.cmd("EHLO client.example", "250-"); !strings.HasPrefix(r, "250-mx.example.org Hello client.example\r\n") {
		t.Errorf("EHLO: %q", r)
	}
	c.cmd("HELO client.example", "250 2.0.0 mx.example.org Hello client.example")
}

// TestSRSBruteForce drives the attack of issue 10: a pipelining client
// guessing SRS hashes, connection after connection, against small error
// limits. It is stopped: each connection closes at the hard limit, the
// client is refused once over its budget, and the right address (with the
// old 4-character hash, in the middle of the guesses) is never accepted.
func TestSRSBruteForce(t *testing.T) {
	now := time.Now()
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	const soft, hard, budget, sleep = 2, 5, 12, 20 * time.Millisecond
	addr, q, _ := abuseServer(t, func(c *Config) {
		c.SoftErrorLimit, c.HardErrorLimit, c.ErrorSleep = soft, hard, sleep
		c.MaxClientErrors, c.ClientErrorWindow = budget, time.Hour
		c.Now = clock
	})
	right := oldSRS("boss@victim.test")
	var guesses []string
	for i := range 1000 {
		g := fmt.Sprintf("SRS0=%04d=%s", i, strings.SplitN(right, "=", 3)[2])
		if i == 7 {
			g = right
		}
		guesses = append(guesses, "RCPT TO:<"+g+">\r\n")
	}
	attack := "EHLO attacker.example\r\nMAIL FROM:<x@attacker.example>\r\n" + strings.Join(guesses, "") + "DATA\r\n"
	refused, answered, conns := 0, 0, 0
	start := time.Now()
	for conns = 0; conns < 50 && refused == 0; conns++ {
		c := dial(t, addr)
		greeting := c.reply()
		if strings.HasPrefix(greeting, "421 4.7.0") {
			refused++
			break
		}
		io.WriteString(c.c, attack)
		for {
			r := c.reply()
			if r == "" {
				break // closed
			}
			switch {
			case strings.HasPrefix(r, "550"):
				answered++
			case strings.HasPrefix(r, "421"), strings.HasPrefix(r, "250"), strings.HasPrefix(r, "220"):
			default:
				t.Fatalf("reply %q", r)
			}
			if strings.HasPrefix(r, "250 2.1.5") || strings.HasPrefix(r, "354") {
				t.Fatalf("a guess was accepted: %q", r)
			}
		}
	}
	if refused == 0 {
		t.Fatalf("still accepting connections after %d connections and %d guesses", conns, answered)
	}
	if answered > budget {
		t.Errorf("%d guesses answered, budget %d", answered, budget)
	}
	// The delays past the soft limit happened (a lower bound only).
	if el := time.Since(start); el < time.Duration((budget/hard)*(hard-soft-1))*sleep {
		t.Errorf("%v: the error replies past the soft limit were not delayed", el)
	}
	if msgs, _ := q.List(); len(msgs) != 0 {
		t.Errorf("%d messages queued", len(msgs))
	}
	// Once the window has moved on, the client is welcome again.
	mu.Lock()
	now = now.Add(time.Hour + time.Minute)
	mu.Unlock()
	dial(t, addr).cmd("", "220")
}

// TestHarvest: unknown-user RCPTs (address harvesting) are limited the same
// way, and a message delivered resets the connection's count.
func TestHarvest(t *testing.T) {
	addr, q, _ := abuseServer(t, func(c *Config) { c.SoftErrorLimit, c.HardErrorLimit, c.ErrorSleep = 3, 5, -1 })
	c := dial(t, addr)
	c.cmd("", "220")
	c.cmd("EHLO a.example", "250")
	c.cmd("MAIL FROM:<x@attacker.example>", "250")
	for i := range 4 {
		c.cmd(fmt.Sprintf("RCPT TO:<user%d@example.org>", i), "550 5.1.1")
	}
	c.cmd("RCPT TO:<din@example.org>", "250")
	c.cmd("DATA", "354")
	c.cmd("Subject: x\r\n\r\nx\r\n.", "250 2.0.0 Queued")
	// The count starts again: four more errors, then the fifth closes.
	c.cmd("MAIL FROM:<x@attacker.example>", "250")
	var b strings.Builder
	for i := range 5000 {
		fmt.Fprintf(&b, "RCPT TO:<user%d@example.org>\r\n", i)
	}
	io.WriteString(c.c, b.String())
	for i := range 4 {
		if r := c.reply(); !strings.HasPrefix(r, "550 5.1.1") {
			t.Fatalf("RCPT %d: %q", i, r)
		}
	}
	if r := c.reply(); !strings.HasPrefix(r, "550 5.1.1") {
		t.Fatalf("fifth: %q", r)
	}
	if r := c.reply(); !strings.HasPrefix(r, "421 4.7.0") {
		t.Fatalf("after the hard limit: %q", r)
	}
	c.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if rest, _ := io.ReadAll(c.r); len(rest) > 0 {
		t.Errorf("after 421: %q", rest)
	}
	if msgs, _ := q.List(); len(msgs) != 1 {
		t.Errorf("%d queued", len(msgs))
	}
}

// TestRefusedFloodLog: a flood of refused connections is summarised, not
// logged one line each.
func TestRefusedFloodLog(t *testing.T) {
	var logs testlib.Buffer
	addr, _ := testServer(t, MX, func(c *Config) {
		c.MaxConnsPerIP = 1
		c.Log = slog.New(slog.NewTextHandler(&logs, nil))
	})
	hold := dial(t, addr)
	hold.cmd("", "220")
	for range 300 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		r, _ := bufio.NewReader(c).ReadString('\n')
		c.Close()
		if !strings.HasPrefix(r, "421 4.7.0") {
			t.Fatalf("%q", r)
		}
	}
	if n := strings.Count(logs.String(), "refused"); n == 0 || n > 3 {
		t.Errorf("%d log lines about refused connections:\n%s", n, logs.String())
	}
}

// TestRefusalLogSummary: the summary comes once the interval is over.
func TestRefusalLogSummary(t *testing.T) {
	var logs testlib.Buffer
	r := newRefusalLog(slog.New(slog.NewTextHandler(&logs, nil)), 50*time.Millisecond)
	for i := range 1000 {
		r.add("too many connections", clientKey(netipAddr(t, fmt.Sprintf("192.0.2.%d", i%200))))
	}
	for i := 0; !strings.Contains(logs.String(), "refused=999"); i++ {
		if i > 200 {
			t.Fatalf("no summary:\n%s", logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := strings.Count(logs.String(), "\n"); n != 2 || !strings.Contains(logs.String(), "clients=200") {
		t.Errorf("%d lines:\n%s", n, logs.String())
	}
}

// testTLSConfig is a server configuration with a self-signed certificate
// for mx.example.org.
func testTLSConfig(t *testing.T) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), DNSNames: []string{"mx.example.org"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
}

func netipAddr(t *testing.T, s string) netip.Addr {
	t.Helper()
	a, err := netip.ParseAddr(s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}
