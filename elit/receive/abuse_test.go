package receive

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
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

// oldSRS makes the SRS address Elit made before its hash grew (4 base64
// characters of an HMAC-SHA1), which a brute force found in seconds.
func oldSRS(to string) string {
	local, domain, _ := strings.Cut(to, "@")
	d := time.Now().Unix() / 86400 % 1024
	const b32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
	stamp := string([]byte{b32[d>>5], b32[d&31]})
	m := hmac.New(sha1.New, abuseKey)
	for _, p := range []string{stamp, domain, local} {
		m.Write([]byte(strings.ToLower(p)))
	}
	h := base64.StdEncoding.EncodeToString(m.Sum(nil))[:4]
	return "SRS0=" + h + "=" + stamp + "=" + domain + "=" + local + "@example.org"
}

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

// TestAbuse is what an attacker (or a broken client) sends, in one place:
// the input, pipelined, the replies it must get, and how many messages may
// be queued (none, but for a check that something legitimate still works).
// Every reply must be printable ASCII: none of these sessions uses
// SMTPUTF8. A case is a line.
func TestAbuse(t *testing.T) {
	srsOK, _ := abuseSRS.Forward("boss@victim.test")
	srsHash := strings.Split(srsOK, "=")[1]
	badSRS := strings.Replace(srsOK, srsHash, "AAAAAAAAAAAAA", 1)
	bounceOK := abuseSigner.BounceAddress("team@example.org", "h@example.net")
	const (
		ehlo = "EHLO attacker.example\r\n"
		mail = "MAIL FROM:<x@attacker.example>\r\n"
		body = "DATA\r\nSubject: x\r\n\r\nx\r\n.\r\n"
	)
	for _, c := range []struct {
		name    string
		send    string   // after the greeting
		want    []string // reply prefixes, in order
		then    string   // sent after those replies
		closed  bool     // the server closes the connection after all that
		queued  int
		bounces int
	}{
		// Capabilities: guessed, forged or old addresses we hand out.
		{"srs guessed hash", ehlo + mail + "RCPT TO:<" + badSRS + ">\r\n", []string{"250", "250", "550 5.1.1"}, "", false, 0, 0},
		{"srs old 4-character hash", ehlo + mail + "RCPT TO:<" + oldSRS("boss@victim.test") + ">\r\n", []string{"250", "250", "550 5.1.1"}, "", false, 0, 0},
		{"srs short hash", ehlo + mail + "RCPT TO:<" + strings.Replace(srsOK, srsHash, srsHash[:4], 1) + ">\r\n", []string{"250", "250", "550 5.1.1"}, "", false, 0, 0},
		{"srs valid", ehlo + mail + "RCPT TO:<" + srsOK + ">\r\n" + body, []string{"250", "250", "250", "354", "250 2.0.0 Queued"}, "", false, 1, 0},
		{"list bounce unsigned", ehlo + mail + "RCPT TO:<team+bounces=h=example.net@example.org>\r\n", []string{"250", "250", "550 5.1.1"}, "", false, 0, 0},
		{"list bounce bad signature", ehlo + mail + "RCPT TO:<" + strings.Replace(bounceOK, "=h=", "=x=", 1) + ">\r\n", []string{"250", "250", "550 5.1.1"}, "", false, 0, 0},
		{"list bounce not a member", ehlo + mail + "RCPT TO:<" + abuseSigner.BounceAddress("team@example.org", "mallory@evil.example") + ">\r\n", []string{"250", "250", "550 5.1.1"}, "", false, 0, 0},
		{"list bounce not a list", ehlo + mail + "RCPT TO:<" + abuseSigner.BounceAddress("din@example.org", "r@example.com") + ">\r\n", []string{"250", "250", "550 5.1.1"}, "", false, 0, 0},
		{"list bounce valid", ehlo + mail + "RCPT TO:<" + bounceOK + ">\r\n" + body, []string{"250", "250", "250", "354", "250 2.0.0 Bounce recorded"}, "", false, 0, 1},
		// Relay and unknown users.
		{"relay", ehlo + mail + "RCPT TO:<boss@victim.test>\r\n", []string{"250", "250", "554 5.7.1"}, "", false, 0, 0},
		{"relay by literal", ehlo + mail + "RCPT TO:<boss@[192.0.2.1]>\r\n", []string{"250", "250", "554 5.7.1"}, "", false, 0, 0},
		{"unknown user", ehlo + mail + "RCPT TO:<nobody@example.org>\r\n", []string{"250", "250", "550 5.1.1"}, "", false, 0, 0},
		// The DATA reader (go-smtp's, patched).
		{"CR CR LF before the end", ehlo + mail + "RCPT TO:<din@example.org>\r\nDATA\r\nSubject: x\r\n\r\nx\r\r\n.\r\n", []string{"250", "250", "250", "354", "550 5.5.2"}, "", false, 0, 0},
		{"dot CR smuggling", ehlo + mail + "RCPT TO:<din@example.org>\r\nDATA\r\nSubject: x\r\n\r\nx\r\n.\rMAIL FROM:<a@b.example>\r\n.\r\n", []string{"250", "250", "250", "354", "550 5.5.2"}, "", false, 0, 0},
		{"LF dot LF smuggling", ehlo + mail + "RCPT TO:<din@example.org>\r\nDATA\r\nSubject: x\r\n\r\nx\n.\nMAIL FROM:<a@b.example>\r\n.\r\n", []string{"250", "250", "250", "354", "550 5.5.2"}, "", false, 0, 0},
		// Protocol details.
		{"NUL in EHLO", "EHLO a\x00b.example\r\n", []string{"501 5.5.2"}, "", false, 0, 0},
		{"control characters in HELO", "HELO a\x1b[2Jb\r\n", []string{"501 5.5.2"}, "", false, 0, 0},
		{"non-ASCII address without SMTPUTF8", ehlo + mail + "RCPT TO:<dïn@example.org>\r\n", []string{"250", "250", "553 5.6.7"}, "", false, 0, 0},
		{"non-ASCII sender without SMTPUTF8", ehlo + "MAIL FROM:<ätt@attacker.example>\r\n", []string{"250", "553 5.6.7"}, "", false, 0, 0},
		{"Postmaster without a domain", ehlo + mail + "RCPT TO:<Postmaster>\r\n" + body, []string{"250", "250", "250", "354", "250 2.0.0 Queued"}, "", false, 1, 0},
		{"failed STARTTLS handshake", ehlo + "STARTTLS\r\n", []string{"250", "220"}, "\x16\x03\x01\x00\x05hello\r\nMAIL FROM:<x@y.example>\r\n", true, 0, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			addr, q, bl := abuseServer(t, nil)
			conn := dial(t, addr)
			conn.cmd("", "220")
			io.WriteString(conn.c, c.send)
			for i, w := range c.want {
				r := conn.reply()
				if !strings.HasPrefix(r, w) {
					t.Fatalf("reply %d: %q, want %s", i, r, w)
				}
				if !printableASCII(r) {
					t.Errorf("reply %d is not printable ASCII: %q", i, r)
				}
			}
			io.WriteString(conn.c, c.then)
			if c.closed {
				conn.c.SetReadDeadline(time.Now().Add(10 * time.Second))
				// Closed, with nothing more said in SMTP (a TLS alert may come).
				if rest, err := io.ReadAll(conn.r); err != nil || bytes.Contains(rest, []byte("\r\n")) {
					t.Errorf("not closed: %q %v", rest, err)
				}
			}
			if msgs, _ := q.List(); len(msgs) != c.queued {
				t.Errorf("%d messages queued, want %d", len(msgs), c.queued)
			}
			if n := bl.len(); n != c.bounces {
				t.Errorf("%d list bounces recorded, want %d", n, c.bounces)
			}
		})
	}
}

func printableASCII(s string) bool {
	for _, c := range []byte(strings.TrimRight(s, "\r\n")) {
		if (c < ' ' || c > '~') && c != '\r' && c != '\n' {
			return false
		}
	}
	return true
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
