package deliver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"elit.local/elit/internal/smtptest"
	"elit.local/elit/internal/testlib"
	"elit.local/elit/queue"
)

// startSink starts smtp-sink (smtptest.StartSink).
func startSink(t *testing.T, addr string, args ...string) *smtptest.Sink {
	return smtptest.StartSink(t, addr, args...)
}

// subjects counts the messages the sink got by their Subject.
func subjects(s *smtptest.Sink) map[string]int {
	b, _ := os.ReadFile(s.Dump)
	got := map[string]int{}
	for _, m := range regexp.MustCompile(`(?m)^Subject: (.*?)\r?$`).FindAllStringSubmatch(string(b), -1) {
		got[m[1]]++
	}
	return got
}

// queueNumbered queues n messages to a@example.com, each with its own
// Subject ("message I").
func queueNumbered(t *testing.T, d *Deliverer, n int) []*queue.Message {
	t.Helper()
	var ms []*queue.Message
	for i := range n {
		m := &queue.Message{From: "sender@example.net", Recipients: []queue.Recipient{{Address: "a@example.com"}}}
		body := fmt.Sprintf("Subject: message %d\r\n\r\nhello %d\r\n", i, i)
		if err := d.cfg.Queue.Put(m, strings.NewReader(body)); err != nil {
			t.Fatal(err)
		}
		ms = append(ms, m)
	}
	return ms
}

// checkOnce checks that the sink got each of n numbered messages once
// and that none is left in the queue.
func checkOnce(t *testing.T, d *Deliverer, s *smtptest.Sink, n int) {
	t.Helper()
	got := subjects(s)
	for i := range n {
		if c := got[fmt.Sprintf("message %d", i)]; c != 1 {
			t.Errorf("message %d arrived %d times", i, c)
		}
	}
	if len(got) != n {
		t.Errorf("the sink got %d distinct messages, want %d", len(got), n)
	}
	if left, _ := d.cfg.Queue.List(); len(left) != 0 {
		t.Errorf("%d messages left in the queue: %+v", len(left), left[0].Recipients)
	}
}

// TestReuseSink delivers messages one after another to smtp-sink as the
// MX: they go over one connection (RSET between them, RFC 5321
// §4.1.1.5); a session the sink closed while idle (its -t timeout), or
// one that breaks at the RSET (-q rset), is replaced by a new connection
// and the message delivered in the same attempt; nothing is lost or
// sent twice.
func TestReuseSink(t *testing.T) {
	const n = 6
	for _, c := range []struct {
		name      string
		args      []string
		idleClose bool // wait for the sink to close the idle session before each message
		wantConns int  // connections the sink saw
	}{
		{name: "reused", wantConns: 1},
		{name: "closed by the peer while idle", args: []string{"-t", "1"}, idleClose: true, wantConns: n},
		{name: "broken at RSET", args: []string{"-q", "rset"}, wantConns: n},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := startSink(t, "", c.args...)
			_, port, _ := net.SplitHostPort(s.Addr)
			d := newDeliverer(t, Config{Resolver: loopbackMX("example.com"), Port: port, ReuseIdle: time.Minute})
			for i, m := range queueNumbered(t, d, n) {
				if c.idleClose && i > 0 {
					s.WaitSessions(t, 1+i) // the sink ended the previous session
				}
				d.process(context.Background(), m.ID)
				if _, err := d.cfg.Queue.Get(m.ID); !errors.Is(err, queue.ErrNotFound) {
					got, _ := d.cfg.Queue.Get(m.ID)
					t.Fatalf("message %d not delivered at the first attempt: %+v", i, got.Recipients)
				}
			}
			d.pool.close()
			s.WaitSessions(t, 1+c.wantConns)
			if got, _ := s.Sessions(); got-1 != c.wantConns {
				t.Errorf("%d connections for %d messages, want %d", got-1, n, c.wantConns)
			}
			checkOnce(t, d, s, n)
		})
	}
}

// TestReuseConcurrent runs the deliverer on many messages to smtp-sink:
// all arrive once each, over fewer connections than messages, and every
// connection is closed when Run ends.
func TestReuseConcurrent(t *testing.T) {
	const n = 60
	s := startSink(t, "")
	_, port, _ := net.SplitHostPort(s.Addr)
	d := newDeliverer(t, Config{Resolver: loopbackMX("example.com"), Port: port, MaxPerDest: 4, ReuseMessages: 7})
	queueNumbered(t, d, n)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		d.Run(ctx)
		close(done)
	}()
	for range 3000 {
		if _, msgs := s.Sessions(); msgs >= n {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	for range 1000 { // the last results are recorded after the 250
		if left, _ := d.cfg.Queue.List(); len(left) == 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	if d.pool.idleCount() != 0 {
		t.Errorf("%d sessions idle after Run", d.pool.idleCount())
	}
	checkOnce(t, d, s, n)
	_, msgs := s.Sessions()
	for range 1000 {
		if conns, _ := s.Sessions(); conns-1 >= (n+6)/7 && msgs >= n {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	conns, _ := s.Sessions()
	conns-- // the probe
	if conns >= n || conns < (n+6)/7 {
		t.Errorf("%d connections for %d messages (at most 7 each)", conns, n)
	}
}

// TestReuseTLS: a kept session is used only for a message whose TLS plan
// is the one it was opened under, and a REQUIRETLS message only on one
// with verified TLS to a server that offers REQUIRETLS (RFC 8689
// §4.2.1). The policy changes between the two messages of each case.
func TestReuseTLS(t *testing.T) {
	cert, pool := testlib.Certificate("mx.example.com")
	_, otherPool := testlib.Certificate("mx.example.com")
	opp := Opportunistic{}
	for _, c := range []struct {
		name                 string
		untrusted            bool // the peer's certificate does not verify
		noREQUIRETLS         bool // the peer does not offer it
		first, second        TLSPolicy
		requireTLS           bool // the second message has REQUIRETLS
		wantSessions         int
		wantSecond           string // "delivered", or the start of its LastError
		wantSecondREQUIRETLS bool
	}{
		{name: "same plan", first: opp, second: opp, wantSessions: 1, wantSecond: "delivered"},
		{name: "same plan, the fallback requirement", untrusted: true, first: opp, second: opp, wantSessions: 2, wantSecond: "delivered"},
		{name: "a policy appears", untrusted: true, first: opp, second: enforcing, wantSessions: 3, wantSecond: "4.7.5"},
		{name: "another plan", first: opp, second: enforcing, wantSessions: 2, wantSecond: "delivered"},
		{name: "REQUIRETLS on a verified session", first: enforcing, second: enforcing, requireTLS: true, wantSessions: 1, wantSecond: "delivered", wantSecondREQUIRETLS: true},
		{name: "REQUIRETLS, the server does not offer it", noREQUIRETLS: true, first: enforcing, second: enforcing, requireTLS: true, wantSessions: 2, wantSecond: "5.7.30"},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := newPeer(t, func(s *smtp.Server) {
				s.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
				s.EnableREQUIRETLS = !c.noREQUIRETLS
			})
			roots := pool
			if c.untrusted {
				roots = otherPool
			}
			var current atomic.Value
			current.Store(policyHolder{c.first})
			policy := policyFunc(func(dest TLSDestination) (TLSPlan, error) {
				return current.Load().(policyHolder).TLSPlan(context.Background(), dest)
			})
			d := newDeliverer(t, Config{Resolver: loopbackMX("example.com"), Port: p.Port, RootCAs: roots, TLSPolicy: policy})
			first := &queue.Message{From: "sender@example.net", Recipients: []queue.Recipient{{Address: "a@example.com"}}}
			queueMessage(t, d, first)
			d.process(context.Background(), first.ID)
			if len(p.Received()) != 1 {
				t.Fatalf("the first message was not delivered")
			}
			current.Store(policyHolder{c.second})
			second := &queue.Message{From: "sender@example.net", RequireTLS: c.requireTLS, Recipients: []queue.Recipient{{Address: "a@example.com"}}}
			queueMessage(t, d, second)
			d.process(context.Background(), second.ID)
			status := "delivered"
			if got, err := d.cfg.Queue.Get(second.ID); err == nil {
				status = got.Recipients[0].LastError
			} else if !errors.Is(err, queue.ErrNotFound) {
				t.Fatal(err)
			} else if len(p.Received()) != 2 { // failed and reported
				dsn, _ := dsnOf(t, d)
				_, status, _ = strings.Cut(dsn, "<a@example.com>: ")
			}
			if !strings.HasPrefix(status, c.wantSecond) {
				t.Errorf("second message: %q, want %q", status, c.wantSecond)
			}
			if rcvd := p.Received(); c.wantSecond == "delivered" && (len(rcvd) != 2 || rcvd[1].RequireTLS != c.wantSecondREQUIRETLS) {
				t.Errorf("the peer got %d messages (REQUIRETLS %v)", len(rcvd), c.wantSecondREQUIRETLS)
			} else if c.wantSecond != "delivered" && len(rcvd) != 1 {
				t.Errorf("the peer got the second message")
			}
			if got := p.Sessions(); got != c.wantSessions {
				t.Errorf("%d sessions, want %d", got, c.wantSessions)
			}
		})
	}
}

// policyHolder lets an atomic.Value hold policies of different types.
type policyHolder struct{ TLSPolicy }

// TestReuseOff: with ReuseIdle negative every message has its own
// connection, and the session is ended with QUIT.
func TestReuseOff(t *testing.T) {
	p := newPeer(t, nil)
	d := newDeliverer(t, Config{Resolver: loopbackMX("example.com"), Port: p.Port, ReuseIdle: -1})
	for range 3 {
		m := &queue.Message{From: "sender@example.net", Recipients: []queue.Recipient{{Address: "a@example.com"}}}
		queueMessage(t, d, m)
		d.process(context.Background(), m.ID)
	}
	if len(p.Received()) != 3 || p.Sessions() != 3 || d.pool.idleCount() != 0 {
		t.Errorf("%d messages over %d sessions, %d idle; want 3 over 3, none", len(p.Received()), p.Sessions(), d.pool.idleCount())
	}
}
