package deliver

import (
	"io"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"elit.local/elit/dns"
	"elit.local/elit/internal/smtptest"
	"elit.local/elit/queue"
)

// peer is the test peer of elit/internal/smtptest.
type peer = smtptest.Peer

func newPeer(t *testing.T, configure func(*smtp.Server)) *peer { return smtptest.NewPeer(t, configure) }

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
	t.Cleanup(d.pool.close) // as Run does at its end
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
