// Package smtptest is a peer mail server for the tests of delivery: a
// go-smtp server on loopback that records what it accepts.
package smtptest

import (
	"context"
	"io"
	"log"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"elit.local/elit/internal/testlib"
)

// Peer is a mail server on 127.0.0.1.
type Peer struct {
	Server *smtp.Server
	Port   string
	// Wire is what was said, both ways.
	Wire testlib.Buffer
	// OnData, when set, handles DATA (after MAIL and RCPT were recorded);
	// OnRcpt, when set, answers RCPT.
	OnData func(r io.Reader) error
	OnRcpt func(to string) error

	mu       sync.Mutex
	got      []Message
	sessions int
}

// Message is one transaction the peer accepted.
type Message struct {
	From   string
	Rcpts  []string
	ORcpts []string // "TYPE;address", decoded, per recipient
	Data   string
	// RequireTLS: MAIL had REQUIRETLS (RFC 8689).
	RequireTLS bool
}

// NewPeer starts a peer on 127.0.0.1 (configure may set the server's
// extensions and TLS) and stops it when the test ends.
func NewPeer(t testing.TB, configure func(*smtp.Server)) *Peer {
	t.Helper()
	return NewPeerAt(t, "127.0.0.1:0", configure)
}

// NewPeerAt starts a peer listening on addr.
func NewPeerAt(t testing.TB, addr string, configure func(*smtp.Server)) *Peer {
	t.Helper()
	p := &Peer{}
	p.Server = smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) {
		return &session{p: p}, nil
	}))
	p.Server.Domain = "mx.example.com"
	p.Server.Debug = &p.Wire
	p.Server.ErrorLog = log.New(io.Discard, "", 0)
	if configure != nil {
		configure(p.Server)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	_, p.Port, _ = net.SplitHostPort(l.Addr().String())
	go p.Server.Serve(countingListener{l, p})
	t.Cleanup(func() {
		// Shutdown lets sessions end; Close when one does not.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if p.Server.Shutdown(ctx) != nil {
			p.Server.Close()
		}
	})
	return p
}

// Received returns the transactions accepted so far.
func (p *Peer) Received() []Message {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Message(nil), p.got...)
}

// Sessions returns the number of connections the peer has accepted.
func (p *Peer) Sessions() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.sessions
}

// countingListener counts the connections of its peer.
type countingListener struct {
	net.Listener
	p *Peer
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.p.mu.Lock()
		l.p.sessions++
		l.p.mu.Unlock()
	}
	return c, err
}

type session struct {
	p   *Peer
	cur Message
}

func (s *session) Reset()        { s.cur = Message{} }
func (s *session) Logout() error { return nil }

func (s *session) Mail(from string, opts *smtp.MailOptions) error {
	s.cur.From = from
	s.cur.RequireTLS = opts != nil && opts.RequireTLS
	return nil
}

func (s *session) Rcpt(to string, opts *smtp.RcptOptions) error {
	if s.p.OnRcpt != nil {
		if err := s.p.OnRcpt(to); err != nil {
			return err
		}
	}
	s.cur.Rcpts = append(s.cur.Rcpts, to)
	orcpt := ""
	if opts != nil && opts.OriginalRecipient != "" {
		orcpt = string(opts.OriginalRecipientType) + ";" + opts.OriginalRecipient
	}
	s.cur.ORcpts = append(s.cur.ORcpts, orcpt)
	return nil
}

func (s *session) Data(r io.Reader) error {
	if s.p.OnData != nil {
		if err := s.p.OnData(r); err != nil {
			return err
		}
	}
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.cur.Data = string(b)
	s.p.mu.Lock()
	s.p.got = append(s.p.got, s.cur)
	s.p.mu.Unlock()
	return nil
}
