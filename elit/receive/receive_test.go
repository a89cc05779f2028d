package receive

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"elit.local/elit/auth"
	"elit.local/elit/decide"
	"elit.local/elit/policy"
	"elit.local/elit/queue"
	"elit.local/elit/userdb"
)

func TestScanner(t *testing.T) {
	for _, c := range []struct {
		name     string
		data     string
		err      error
		received int
		from     []string
	}{
		{"simple", "From: a@b.c\r\nReceived: x\r\nreceived : y\r\n\r\nbody\r\n", nil, 2, []string{" a@b.c"}},
		{"folded from", "From: A\r\n <a@b.c>\r\nTo: x\r\n\r\n", nil, 0, []string{" A <a@b.c>"}},
		{"two froms", "From: a\r\nFrom: b\r\n\r\n", nil, 0, []string{" a", " b"}},
		{"headers only", "From: a\r\n", nil, 0, []string{" a"}},
		{"received in body", "Subject: x\r\n\r\nReceived: no\r\n", nil, 0, nil},
		{"empty", "", nil, 0, nil},
		{"bare lf in body", "Subject: x\r\n\r\na\nb\r\n", errBareNewline, 0, nil},
		{"bare lf in header", "Subject: x\n\r\n", errBareNewline, 0, nil},
		{"bare cr", "Subject: x\r\n\r\na\rb\r\n", errBareNewline, 0, nil},
		{"cr at end", "Subject: x\r\n\r\na\r", errBareNewline, 0, nil},
		{"huge header", "X: " + strings.Repeat("a", maxHeaderSection) + "\r\n\r\n", errHeaderTooLong, 0, nil},
		{"too many fields", strings.Repeat("X: y\r\n", maxHeaderFields+1) + "\r\n", errHeaderTooLong, 0, nil},
		{"long from", "From: " + strings.Repeat("a", maxHeaderField) + "\r\n\r\n", nil, 0, []string{""}},
	} {
		t.Run(c.name, func(t *testing.T) {
			// Byte by byte and at once give the same result.
			for _, step := range []int{1, len(c.data) + 1} {
				s := newScanner()
				var err error
				for i := 0; i < len(c.data) && err == nil; i += step {
					_, err = s.Write([]byte(c.data[i:min(i+step, len(c.data))]))
				}
				if err == nil {
					err = s.close()
				}
				if err != c.err {
					t.Fatalf("step %d: err %v, want %v", step, err, c.err)
				}
				if err != nil {
					continue
				}
				m := &decide.Message{Header: s.fields}
				var from []string
				for _, f := range m.Values("From") {
					from = append(from, f.Value)
				}
				if got := len(m.Values("Received")); got != c.received || strings.Join(from, "|") != strings.Join(c.from, "|") {
					t.Errorf("step %d: received %d from %q", step, got, from)
				}
			}
		})
	}
}

func TestReceivedHeader(t *testing.T) {
	now := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	cs := &tls.ConnectionState{Version: tls.VersionTLS13, CipherSuite: tls.TLS_AES_128_GCM_SHA256}
	got := receivedHeader(trace{helo: "client (evil)\r\nX: y", ip: netip.MustParseAddr("2001:db8::1"), hostname: "mx.example.org", id: "ID1",
		tls: cs, user: "din", rcpt: "a@example.org"}, now) +
		receivedHeader(trace{helo: "c.example", ip: netip.MustParseAddr("192.0.2.1"), rdns: "mail.c.example", rdnsSecure: true, hostname: "mx.example.org", id: "ID2", utf8: true}, now) +
		receivedHeader(trace{helo: "d.example", ip: netip.MustParseAddr("192.0.2.3"), rdns: "mail.d.example", hostname: "mx.example.org", id: "ID4"}, now) +
		receivedHeader(trace{helo: "tls.example", ip: netip.MustParseAddr("192.0.2.2"), hostname: "mx.example.org", id: "ID3", tls: cs, requireTLS: true}, now)
	golden := filepath.Join("testdata", "received.golden")
	if os.Getenv("UPDATE_GOLDEN") != "" {
		os.WriteFile(golden, []byte(got), 0o644)
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

// testDB has the users din (password demo) and team (a list).
func testDB(t testing.TB) *userdb.DB {
	t.Helper()
	secrets, err := userdb.Hash("demo", false)
	if err != nil {
		t.Fatal(err)
	}
	db, err := userdb.Parse([]byte(`[{"name":"din","password":"`+secrets.Password+`","mailboxes":["r@example.com"]},
		{"name":"team","mailboxes":["r@example.com","h@example.net"]}]`), "example.org")
	if err != nil {
		t.Fatal(err)
	}
	return db
}

// testSteps are the decide steps elit serve runs, over db, with at most
// maxHops Received fields, the routing adjusted by mod.
func testSteps(db *userdb.DB, maxHops int, mod func(*policy.Route)) decide.Steps {
	users := func() *userdb.DB { return db }
	r := &policy.Route{Users: users}
	if mod != nil {
		mod(r)
	}
	return decide.Steps{&policy.Hops{Max: maxHops}, &policy.Sender{Users: users}, r}
}

// testServer runs a Server on loopback in-process (so the race detector
// sees it) with the users of testDB and the steps of testSteps; mod may
// change the configuration.
func testServer(t testing.TB, mode Mode, mod func(*Config)) (addr string, q *queue.Store) {
	t.Helper()
	db := testDB(t)
	q, err := queue.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	users := func() *userdb.DB { return db }
	cfg := Config{Hostname: "mx.example.org", Steps: testSteps(db, 50, nil),
		Auth: &auth.Server{Users: users, Hostname: "mx.example.org"}, Queue: q,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)), AuthFailureDelay: -1,
		// The error limits only where a test sets them.
		ErrorSleep: -1, HardErrorLimit: 1 << 30, MaxClientErrors: 1 << 30}
	if mod != nil {
		mod(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Serve(ctx, l, mode)
	}()
	t.Cleanup(func() { cancel(); <-done })
	return l.Addr().String(), q
}

type client struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func dial(t *testing.T, addr string) *client {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(20 * time.Second))
	t.Cleanup(func() { c.Close() })
	return &client{t: t, c: c, r: bufio.NewReader(c)}
}

func (c *client) reply() string {
	var b strings.Builder
	for {
		line, err := c.r.ReadString('\n')
		b.WriteString(line)
		if err != nil || len(line) < 4 || line[3] != '-' {
			return b.String()
		}
	}
}

func (c *client) cmd(s, want string) string {
	c.t.Helper()
	if s != "" {
		io.WriteString(c.c, s+"\r\n")
	}
	r := c.reply()
	if !strings.HasPrefix(r, want) {
		c.t.Fatalf("%q: got %q, want %s", s, r, want)
	}
	return r
}

func TestConnectionLimits(t *testing.T) {
	addr, _ := testServer(t, MX, func(c *Config) { c.MaxConnsPerIP = 2 })
	a, b := dial(t, addr), dial(t, addr)
	a.cmd("", "220")
	b.cmd("", "220")
	dial(t, addr).cmd("", "421 4.7.0")
	b.cmd("QUIT", "221")
	b.c.Close()
	// The slot comes back once the server has seen the close.
	for i := 0; ; i++ {
		c := dial(t, addr)
		if r := c.reply(); strings.HasPrefix(r, "220") {
			break
		} else if i == 100 {
			t.Fatalf("slot not released: %q", r)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestJunkCommandsAndSessionTime(t *testing.T) {
	addr, _ := testServer(t, MX, func(c *Config) { c.MaxJunkCommands = 5; c.MaxSessionTime = 300 * time.Millisecond })
	c := dial(t, addr)
	c.cmd("", "220")
	c.cmd("EHLO client.example", "250")
	for range 4 {
		c.cmd("RSET", "250")
	}
	io.WriteString(c.c, "RSET\r\nRSET\r\nRSET\r\n")
	if _, err := io.ReadAll(c.r); err != nil {
		t.Fatal(err) // ends with EOF: closed
	}
	c = dial(t, addr)
	c.cmd("", "220")
	c.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadAll(c.r); err != nil {
		t.Errorf("the session time limit did not close the connection: %v", err)
	}
}

func TestMaxHops(t *testing.T) {
	addr, q := testServer(t, MX, func(c *Config) { c.Steps = testSteps(testDB(t), 3, nil) })
	c := dial(t, addr)
	c.cmd("", "220")
	c.cmd("EHLO client.example", "250")
	send := func(hops int, want string) {
		c.cmd("MAIL FROM:<x@example.net>", "250")
		c.cmd("RCPT TO:<din@example.org>", "250")
		c.cmd("DATA", "354")
		c.cmd(strings.Repeat("Received: from a by b; Mon, 1 Jan 2026 00:00:00 +0000\r\n", hops)+"Subject: x\r\n\r\nhi\r\n.", want)
	}
	send(3, "554 5.4.6")
	send(2, "250 2.0.0 Queued as ")
	msgs, _ := q.List()
	if len(msgs) != 1 {
		t.Errorf("%d queued", len(msgs))
	}
}

// TestConcurrentSessions runs sessions in parallel under the race
// detector: MX, relay refusals and a list expansion.
func TestConcurrentSessions(t *testing.T) {
	addr, q := testServer(t, MX, nil)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			io.WriteString(c, "EHLO c.example\r\nMAIL FROM:<x@example.net>\r\nRCPT TO:<team@example.org>\r\nRCPT TO:<x@other.example>\r\nDATA\r\n")
			r := bufio.NewReader(c)
			var got []string
			for len(got) < 5 {
				line, err := r.ReadString('\n')
				if err != nil {
					t.Error(err)
					return
				}
				if len(line) > 3 && line[3] == ' ' {
					got = append(got, line[:3])
				}
			}
			io.WriteString(c, "Subject: x\r\n\r\nhi\r\n.\r\nQUIT\r\n")
			line, _ := r.ReadString('\n')
			end, _ := r.ReadString('\n')
			if strings.Join(got, " ") != "220 250 250 250 554" || !strings.HasPrefix(line, "354") || !strings.HasPrefix(end, "250 2.0.0 Queued") {
				t.Errorf("replies %v then %q, %q", got, line, end)
			}
		}()
	}
	wg.Wait()
	msgs, _ := q.List()
	if len(msgs) != 8 {
		t.Fatalf("%d queued", len(msgs))
	}
	for _, m := range msgs {
		if len(m.Recipients) != 2 {
			t.Errorf("recipients %+v", m.Recipients)
		}
	}
}

// FuzzSession feeds arbitrary client input to a session: the server must
// answer or close, never panic or hang.
func FuzzSession(f *testing.F) {
	f.Add([]byte("EHLO a\r\nMAIL FROM:<x@example.net>\r\nRCPT TO:<din@example.org>\r\nDATA\r\nSubject: x\r\n\r\nhi\r\n.\r\nQUIT\r\n"))
	f.Add([]byte("HELO a\r\nMAIL FROM:<> BODY=8BITMIME SMTPUTF8\r\nRCPT TO:<team@example.org> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a+40b\r\nBDAT 5 LAST\r\nhello"))
	f.Add([]byte("EHLO a\r\nMAIL FROM:<x@example.net> RET=HDRS ENVID=a+2Bb SIZE=10\r\nRCPT TO:<\"a b\"@example.org>\r\nRSET\r\nVRFY x\r\nNOOP\r\nAUTH PLAIN AGRpbgBkZW1v\r\n"))
	f.Add([]byte("EHLO a\r\nMAIL FROM:<x@example.net>\r\nRCPT TO:<din@example.org>\r\nDATA\r\na\n.\nMAIL FROM:<y@example.net>\r\n.\r\n"))
	f.Add([]byte("EHLO a\r\nMAIL FROM:<x@[127.0.0.1]>\r\nRCPT TO:<din@EXAMPLE.org>\r\nBDAT 3\r\nabcBDAT 0 LAST\r\n"))
	f.Add([]byte("EHLO a\r\nMAIL FROM:<x@example.net>\r\nRCPT TO:<din@example.org>\r\nDATA\r\nx\r\r\n.\r\nQUIT\r\n"))
	f.Add([]byte("EHLO a\r\nMAIL FROM:<x@example.net>\r\nRCPT TO:<din@example.org>\r\nDATA\r\nx\r\n.\rMAIL FROM:<y@example.net>\r\n.\r\n"))
	f.Add([]byte("EHLO a\x00b\r\nHELO \xff\r\nMAIL FROM:<\xc3\xa4@example.net> SMTPUTF8\r\nRCPT TO:<Postmaster>\r\nRCPT TO:<SRS0=AAAAAAAAAAAAA=AB=x.example=y@example.org>\r\n"))
	addr, _ := testServer(f, MX, func(c *Config) { c.ReadTimeout = 500 * time.Millisecond; c.MaxSize = 1 << 16; c.MaxConnsPerIP = 1000 })
	f.Fuzz(func(t *testing.T, input []byte) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		go func() {
			c.Write(input)
			c.Write([]byte("\r\n.\r\nQUIT\r\n"))
		}()
		if _, err := io.ReadAll(c); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("the server neither answered nor closed: %v", err)
			}
		}
	})
}

// headerStep adds a field and reads the spooled message, as the
// verifiers to come will.
type headerStep struct {
	decide.Nop
	body string
}

func (h *headerStep) Data(_ context.Context, t *decide.Transaction, m *decide.Message) error {
	b, err := io.ReadAll(m.Open())
	if err != nil {
		return err
	}
	h.body = string(b)
	t.Fields = append(t.Fields, "X-Checked: yes\r\n")
	for i, f := range m.Header {
		if strings.EqualFold(f.Name, "X-Forged") {
			t.RemoveField(i)
		}
	}
	return nil
}

// TestStepFields: a step sees the message as received without a second
// read from the network, its fields go above our Received field, and the
// header fields it removes are not queued.
func TestStepFields(t *testing.T) {
	hs := &headerStep{}
	addr, q := testServer(t, MX, func(c *Config) { c.Steps = append(decide.Steps{hs}, c.Steps...) })
	c := dial(t, addr)
	c.cmd("", "220")
	c.cmd("EHLO client.example", "250")
	c.cmd("MAIL FROM:<x@example.net>", "250")
	c.cmd("RCPT TO:<din@example.org>", "250")
	c.cmd("DATA", "354")
	sent := "X-Forged: one\r\nSubject: x\r\nX-Forged: two\r\n folded\r\n\r\nhi\r\nX-Forged: in the body\r\n"
	id := strings.TrimSpace(strings.TrimPrefix(c.cmd(sent+".", "250 2.0.0 Queued as "), "250 2.0.0 Queued as "))
	if hs.body != sent {
		t.Errorf("the step read %q", hs.body)
	}
	f, err := q.Data(id)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, _ := io.ReadAll(f)
	if !strings.HasPrefix(string(b), "X-Checked: yes\r\nReceived: from client.example") || !strings.HasSuffix(string(b), "\r\nSubject: x\r\n\r\nhi\r\nX-Forged: in the body\r\n") {
		t.Errorf("queued:\n%s", b)
	}
	m, _ := q.Get(id)
	if m.Size != int64(len(b)) {
		t.Errorf("size %d, have %d bytes", m.Size, len(b))
	}
}

// TestQueueFailure: a full disk is 452 4.3.1, any other failure of the
// queue 451 4.3.0.
func TestQueueFailure(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		{fmt.Errorf("queue x: %w", &os.PathError{Op: "write", Path: "x", Err: syscall.ENOSPC}), "452 4.3.1"},
		{fmt.Errorf("queue x: %w", syscall.EDQUOT), "452 4.3.1"},
		{fmt.Errorf("queue x: %w", syscall.EIO), "451 4.3.0"},
		{errors.New("other"), "451 4.3.0"},
	} {
		r := queueFailure(c.err)
		if got := fmt.Sprintf("%d %d.%d.%d", r.Code, r.EnhancedCode[0], r.EnhancedCode[1], r.EnhancedCode[2]); got != c.want {
			t.Errorf("%v: %s, want %s", c.err, got, c.want)
		}
	}
}

// TestSlowData: data that stops coming past the read timeout gets
// 421 4.4.2 and the connection closes: nothing is queued, and what the
// client sends afterwards is not run as commands.
func TestSlowData(t *testing.T) {
	addr, q := testServer(t, MX, func(c *Config) { c.ReadTimeout = 300 * time.Millisecond })
	c := dial(t, addr)
	c.cmd("", "220")
	c.cmd("EHLO c.example", "250")
	c.cmd("MAIL FROM:<x@example.net>", "250")
	c.cmd("RCPT TO:<din@example.org>", "250")
	c.cmd("DATA", "354")
	io.WriteString(c.c, "Subject: slow\r\n\r\nhello\r\n")
	c.cmd("", "421 4.4.2")
	io.WriteString(c.c, "\r\nRSET\r\nNOOP\r\n") // late: must not be answered
	if rest, _ := io.ReadAll(c.r); len(rest) > 0 {
		t.Errorf("after 421: %q", rest)
	}
	if msgs, err := q.List(); err != nil || len(msgs) != 0 {
		t.Errorf("queued after the timeout: %d, %v", len(msgs), err)
	}
}

// TestSlowLine: a line that has not ended at the read timeout is not run
// (go-smtp ran what had come): the client gets 421 4.4.2 and nothing else.
func TestSlowLine(t *testing.T) {
	addr, _ := testServer(t, MX, func(c *Config) { c.ReadTimeout = 300 * time.Millisecond })
	c := dial(t, addr)
	c.cmd("", "220")
	io.WriteString(c.c, "EHLO")
	c.cmd("", "421 4.4.2")
	if rest, _ := io.ReadAll(c.r); len(rest) > 0 {
		t.Errorf("after 421: %q", rest)
	}
}
