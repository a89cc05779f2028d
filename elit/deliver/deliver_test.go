package deliver

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"elit.local/elit/dns"
	"elit.local/elit/queue"
)

func newTest(t *testing.T, r dns.Resolver) *Deliverer {
	t.Helper()
	q, err := queue.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	d, err := New(Config{Queue: q, Resolver: r, Hostname: "mx.example.org", FirstRetry: time.Minute, MaxRetry: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.pool.close)
	return d
}

func TestMXHosts(t *testing.T) {
	lo := []netip.Addr{netip.MustParseAddr("127.0.0.1")}
	r := &dns.Mem{
		MXs: map[string][]dns.MX{
			"multi.example": {{Host: "c.example", Pref: 20}, {Host: "a.example", Pref: 10}, {Host: "b.example", Pref: 10}, {Host: "a.example", Pref: 30}},
			"null.example":  {{Host: "", Pref: 0}},
			"nomx.example":  nil,
		},
		Addrs: map[string][]netip.Addr{"nomx.example": lo},
		Fail:  map[string]error{"broken.example": errors.New("SERVFAIL")},
	}
	d := newTest(t, r)
	seen := map[string]bool{}
	for range 50 {
		hosts, res := d.mxHosts(context.Background(), "multi.example")
		if res != nil || len(hosts) != 3 || hosts[2] != "c.example" || !slices.Contains(hosts[:2], "a.example") || !slices.Contains(hosts[:2], "b.example") {
			t.Fatalf("hosts %v %v", hosts, res)
		}
		seen[hosts[0]] = true
	}
	if len(seen) != 2 {
		t.Errorf("equal preferences are not shuffled: %v", seen)
	}
	if hosts, res := d.mxHosts(context.Background(), "nomx.example"); res != nil || !slices.Equal(hosts, []string{"nomx.example"}) {
		t.Errorf("implicit MX: %v %v", hosts, res)
	}
	for _, c := range []struct {
		domain    string
		permanent bool
		code      string
	}{{"null.example", true, "5.1.10"}, {"nowhere.example", true, "5.1.2"}, {"broken.example", false, "4.4.3"}} {
		_, res := d.mxHosts(context.Background(), c.domain)
		if res == nil || res.Permanent != c.permanent || res.Enhanced != c.code || res.delivered {
			t.Errorf("%s: %+v", c.domain, res)
		}
	}
}

func TestBackoff(t *testing.T) {
	d := newTest(t, &dns.Mem{})
	for _, c := range []struct {
		n    int
		want time.Duration
	}{{1, time.Minute}, {2, 2 * time.Minute}, {3, 4 * time.Minute}, {7, time.Hour}, {50, time.Hour}} {
		got := d.backoff(c.n)
		if got < c.want*9/10 || got > c.want*11/10 {
			t.Errorf("attempt %d: %v, want %v ±10%%", c.n, got, c.want)
		}
	}
}

func TestNextDue(t *testing.T) {
	t1 := time.Unix(100, 0)
	t2 := time.Unix(200, 0)
	m := &queue.Message{Recipients: []queue.Recipient{
		{Status: queue.Delivered},
		{Status: queue.Pending, NextAttempt: t2},
		{Status: queue.Pending, NextAttempt: t1},
	}}
	if got, ok := nextDue(m); !ok || !got.Equal(t1) {
		t.Errorf("got %v %v", got, ok)
	}
	m.Recipients = append(m.Recipients, queue.Recipient{Status: queue.Failed})
	if got, ok := nextDue(m); !ok || !got.IsZero() {
		t.Errorf("an unbounced failure is due now: %v %v", got, ok)
	}
	m.Recipients = []queue.Recipient{{Status: queue.Delivered}, {Status: queue.Failed, Bounced: true}}
	if _, ok := nextDue(m); ok {
		t.Error("nothing to do, but due")
	}
}

// TestExpiryBounces: past the lifetime a pending recipient fails and the
// sender gets a DSN; a null sender gets none.
func TestExpiryBounces(t *testing.T) {
	d := newTest(t, &dns.Mem{})
	q := d.cfg.Queue
	for _, from := range []string{"sender@example.net", ""} {
		m := &queue.Message{From: from, Received: time.Now().Add(-6 * 24 * time.Hour), Ret: "FULL",
			Recipients: []queue.Recipient{{Address: "a@example.com", LastError: "4.4.1 connection refused"}}}
		if err := q.Put(m, strings.NewReader("Subject: x\r\n\r\nbody\r\n")); err != nil {
			t.Fatal(err)
		}
		d.process(context.Background(), m.ID)
		if _, err := q.Get(m.ID); !errors.Is(err, queue.ErrNotFound) {
			t.Errorf("from %q: the expired message is still queued (%v)", from, err)
		}
	}
	dsn, to := dsnOf(t, d)
	if msgs, _ := q.List(); len(msgs) != 1 || len(to) != 1 || to[0].Address != "sender@example.net" {
		t.Fatalf("want one bounce to the sender, got %+v", msgs)
	}
	for _, want := range []string{"Status: 5.4.7", "Action: failed", "Final-Recipient: rfc822;a@example.com", "Subject: x",
		"Content-Type: message/rfc822", "\r\nbody\r\n"} {
		if !strings.Contains(dsn, want) {
			t.Errorf("DSN lacks %q:\n%s", want, dsn)
		}
	}
}

func TestRoutes(t *testing.T) {
	q, _ := queue.Open(t.TempDir())
	d, err := New(Config{Queue: q, Hostname: "mx.example.org", Resolver: &dns.Mem{},
		Transports: map[string]*Transport{
			"relay":  {Type: "smarthost", Host: "relay.example:25"},
			"user":   {Type: "submission", Host: "smtp.example:587", User: "u", Password: "p"},
			"domain": {Type: "smarthost", Host: "d.example:25"},
			"late":   {Type: "smarthost", Host: "late.example:25"},
		},
		Routes: []Route{
			{ToDomains: []string{"gmail.com"}, Transport: "relay"},
			{MinAttempt: 4, Transport: "late"},
			{FromDomains: []string{"other.org"}, Transport: "domain"},
			{User: "din", Transport: "user"},
		}})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		user, from, to string
		attempts       int
		want           string
	}{
		{"din", "din@example.org", "x@gmail.com", 0, "user"},     // user routes first
		{"", "a@other.org", "x@gmail.com", 0, "domain"},          // then sender domain routes
		{"", "a@example.net", "x@GMAIL.com", 0, "relay"},         // then the rest, in order
		{"", "a@example.net", "x@example.com", 0, "direct"},      // no match
		{"", "a@example.net", "x@example.com", 3, "late"},        // the 4th attempt
		{"bob", "bob@example.org", "x@example.com", 2, "direct"}, // the 3rd
	} {
		m := &queue.Message{From: c.from, AuthUser: c.user}
		got := d.transportFor(m, queue.Recipient{Address: c.to, Attempts: c.attempts})
		if got.Name != c.want {
			t.Errorf("%+v: %s", c, got.Name)
		}
	}
	for _, bad := range []Config{
		{Transports: map[string]*Transport{"x": {Type: "carrier-pigeon"}}},
		{Transports: map[string]*Transport{"x": {Type: "smarthost", Host: "nohostport"}}},
		{Transports: map[string]*Transport{"x": {Type: "smarthost", Host: "h:25", User: "u", Password: "p"}}},
		{Routes: []Route{{Transport: "missing"}}},
	} {
		bad.Queue, bad.Hostname, bad.Resolver = q, "mx.example.org", &dns.Mem{}
		if _, err := New(bad); err == nil {
			t.Errorf("accepted %+v", bad)
		}
	}
}

// TestDelayNotice: a recipient still deferred after DelayWarning gets one
// "delayed" DSN, not one per attempt, and none with NOTIFY=FAILURE.
func TestDelayNotice(t *testing.T) {
	r := &dns.Mem{Fail: map[string]error{"example.com": errors.New("SERVFAIL")}}
	d := newTest(t, r)
	q := d.cfg.Queue
	m := &queue.Message{From: "sender@example.net", Received: time.Now().Add(-5 * time.Hour),
		Recipients: []queue.Recipient{
			{Address: "a@example.com", Attempts: 3},
			{Address: "b@example.com", Attempts: 3, Notify: "FAILURE"},
		}}
	if err := q.Put(m, strings.NewReader("Subject: x\r\n\r\nbody\r\n")); err != nil {
		t.Fatal(err)
	}
	d.process(context.Background(), m.ID)
	again, _ := q.Get(m.ID)
	for i := range again.Recipients {
		again.Recipients[i].NextAttempt = time.Time{}
	}
	q.Update(again)
	d.process(context.Background(), m.ID)
	body, _ := dsnOf(t, d)
	for _, want := range []string{"Action: delayed", "Status: 4.4.3", "Will-Retry-Until: ", "Final-Recipient: rfc822;a@example.com"} {
		if !strings.Contains(body, want) {
			t.Errorf("notice lacks %q:\n%s", want, body)
		}
	}
	if strings.Contains(body, "b@example.com") {
		t.Errorf("NOTIFY=FAILURE recipient in a delay notice")
	}
}
