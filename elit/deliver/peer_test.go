package deliver

import (
	"context"
	"io"
	"log"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"elit.local/elit/dns"
	"elit.local/elit/internal/testlib"
	"elit.local/elit/queue"
)

// peer is a real SMTP server (go-smtp) on loopback that deliveries land
// on; it keeps what it was sent and the session as it saw it.
type peer struct {
	srv  *smtp.Server
	port string

	mu   sync.Mutex
	got  []received
	wire testlib.Buffer
	// data, when set, handles DATA (after MAIL and RCPT were recorded);
	// rcpt, when set, answers RCPT.
	data func(r io.Reader) error
	rcpt func(to string) error
}

// received is one transaction a peer accepted.
type received struct {
	from   string
	rcpts  []string
	orcpts []string // "TYPE;address", decoded, per recipient
	data   string
}

// newPeer starts a peer on 127.0.0.1 (configure may set the server's
// extensions) and stops it when the test ends.
func newPeer(t *testing.T, configure func(*smtp.Server)) *peer {
	t.Helper()
	p := &peer{}
	p.srv = smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) {
		return &peerSession{p: p}, nil
	}))
	p.srv.Domain = "mx.example.com"
	p.srv.Debug = &p.wire
	p.srv.ErrorLog = log.New(io.Discard, "", 0)
	if configure != nil {
		configure(p.srv)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, p.port, _ = net.SplitHostPort(l.Addr().String())
	go p.srv.Serve(l)
	t.Cleanup(func() {
		// Shutdown lets sessions end (Close races with a BDAT in progress
		// in go-smtp); Close when one does not.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if p.srv.Shutdown(ctx) != nil {
			p.srv.Close()
		}
	})
	return p
}

func (p *peer) received() []received {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]received(nil), p.got...)
}

type peerSession struct {
	p   *peer
	cur received
}

func (s *peerSession) Reset()        { s.cur = received{} }
func (s *peerSession) Logout() error { return nil }

func (s *peerSession) Mail(from string, _ *smtp.MailOptions) error {
	s.cur.from = from
	return nil
}

func (s *peerSession) Rcpt(to string, opts *smtp.RcptOptions) error {
	if s.p.rcpt != nil {
		if err := s.p.rcpt(to); err != nil {
			return err
		}
	}
	s.cur.rcpts = append(s.cur.rcpts, to)
	orcpt := ""
	if opts != nil && opts.OriginalRecipient != "" {
		orcpt = string(opts.OriginalRecipientType) + ";" + opts.OriginalRecipient
	}
	s.cur.orcpts = append(s.cur.orcpts, orcpt)
	return nil
}

func (s *peerSession) Data(r io.Reader) error {
	if s.p.data != nil {
		if err := s.p.data(r); err != nil {
			return err
		}
	}
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.cur.data = string(b)
	s.p.mu.Lock()
	s.p.got = append(s.p.got, s.cur)
	s.p.mu.Unlock()
	return nil
}

// loopbackMX is a resolver with the mail exchanger of domain at
// 127.0.0.1 (domain as the DNS has it: A-labels).
func loopbackMX(domain string) *dns.Mem {
	return &dns.Mem{
		MXs:   map[string][]dns.MX{domain: {{Host: "mx." + domain, Pref: 10}}},
		Addrs: map[string][]netip.Addr{"mx." + domain: {netip.MustParseAddr("127.0.0.1")}},
	}
}

// newDeliverer is a Deliverer for cfg with a queue in a temporary
// directory and the test defaults.
func newDeliverer(t *testing.T, cfg Config) *Deliverer {
	t.Helper()
	q, err := queue.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cfg.Queue = q
	if cfg.Hostname == "" {
		cfg.Hostname = "mx.example.org"
	}
	if cfg.FirstRetry == 0 {
		cfg.FirstRetry, cfg.MaxRetry = time.Minute, time.Hour
	}
	d, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// queueMessage queues m with a small body.
func queueMessage(t *testing.T, d *Deliverer, m *queue.Message) {
	t.Helper()
	if err := d.cfg.Queue.Put(m, strings.NewReader("Subject: test\r\n\r\nhello\r\n")); err != nil {
		t.Fatal(err)
	}
}

// dsnOf returns the one DSN queued besides the message, and where to.
func dsnOf(t *testing.T, d *Deliverer) (string, []queue.Recipient) {
	t.Helper()
	msgs, _ := d.cfg.Queue.List()
	var dsns []*queue.Message
	for _, m := range msgs {
		if m.From == "" {
			dsns = append(dsns, m)
		}
	}
	if len(dsns) != 1 {
		t.Fatalf("%d DSNs queued, want 1", len(dsns))
	}
	f, err := d.cfg.Queue.Data(dsns[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, _ := io.ReadAll(f)
	return string(b), dsns[0].Recipients
}
