// Package deliver is the send side of Elit: it takes recipients from the
// durable queue and delivers them to the destination's mail exchangers
// (RFC 5321 §5) or to a smarthost, retries temporary failures on a
// doubling schedule, and bounces permanent ones with a DSN (RFC 3464).
// Each result is written to the queue before the next step, so a restart
// neither loses a recipient nor sends one again (beyond the transaction
// in flight at the crash).
package deliver

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"time"

	"elit.local/elit/dns"
	"elit.local/elit/lists"
	"elit.local/elit/mailaddr"
	"elit.local/elit/metrics"
	"elit.local/elit/queue"
	"elit.local/elit/userdb"
)

// Config configures a Deliverer. Zero values take the defaults noted.
type Config struct {
	Queue    *queue.Store
	Resolver dns.Resolver      // for direct delivery (required: any route may end in it)
	Users    func() *userdb.DB // for bounces to local senders
	Hostname string            // in EHLO and in DSNs
	Log      *slog.Logger

	// Smarthost, when set (host:port), receives all mail not routed
	// elsewhere: no MX lookup.
	Smarthost string
	// ListBounce records a failed delivery to a list member; nil: the
	// failure is reported to the sender like any other. ListSigner makes
	// the members' bounce addresses (both or neither).
	ListBounce func(list, member, reason string)
	ListSigner *lists.Signer
	// Transports by name, and the Routes that pick them (see Route).
	Transports map[string]*Transport
	Routes     []Route
	// Port is the destination port of direct delivery ("25").
	Port string
	// RootCAs verify the destination's certificate; nil is the system's.
	RootCAs *x509.CertPool

	FirstRetry time.Duration // delay after the first failure (5 min), doubling
	MaxRetry   time.Duration // longest delay between attempts (8 h)
	Lifetime   time.Duration // then the message bounces (5 days)
	// DelayWarning is when the sender is told that a message is still
	// being retried (4 h; negative: never).
	DelayWarning time.Duration
	MaxParallel  int           // messages in delivery at once (20)
	MaxPerDest   int           // connections to one destination domain or relay at once (10)
	Timeout      time.Duration // per SMTP command (5 min), connect (30 s)

	Now  func() time.Time
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

func (c *Config) setDefaults() {
	if c.Port == "" {
		c.Port = "25"
	}
	if c.FirstRetry == 0 {
		c.FirstRetry = 5 * time.Minute
	}
	if c.MaxRetry == 0 {
		c.MaxRetry = 8 * time.Hour
	}
	if c.Lifetime == 0 {
		c.Lifetime = 5 * 24 * time.Hour
	}
	if c.DelayWarning == 0 {
		c.DelayWarning = 4 * time.Hour
	}
	if c.MaxParallel == 0 {
		c.MaxParallel = 20
	}
	if c.MaxPerDest == 0 {
		c.MaxPerDest = 10
	}
	if c.Timeout == 0 {
		c.Timeout = 5 * time.Minute
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.Dial == nil {
		d := &net.Dialer{Timeout: 30 * time.Second}
		c.Dial = d.DialContext
	}
}

var (
	deliveriesTotal  = metrics.Default.NewCounterVec("elit_deliveries_total", "Recipient delivery attempts, by result (delivered, deferred, failed).", "result")
	bouncesTotal     = metrics.Default.NewCounter("elit_bounces_total", "Delivery status notifications queued.")
	transactionTime  = metrics.Default.NewSeconds("elit_delivery_seconds_total", "Time spent in delivery attempts (per transport and domain).")
	transactionCount = metrics.Default.NewCounter("elit_delivery_transactions_total", "Delivery attempts (per transport and domain); with elit_delivery_seconds_total, the mean latency.")
)

// Deliverer runs deliveries. Notify tells it of a new message; Run does
// the work until its context ends.
type Deliverer struct {
	cfg  Config
	wake chan struct{}

	mu  sync.Mutex
	due map[string]time.Time // queued messages by next attempt
	// inflight marks the messages a delivery or an operator command is
	// working on: whoever marks one owns it until it clears the mark.
	inflight map[string]bool
	dests    map[string]chan struct{} // per destination: a semaphore

	// Test hooks: claimed is called when Run has claimed a message for a
	// delivery that is about to start; waiting when an operator command
	// waits for the delivery of a message to end.
	claimed, waiting func(id string)
}

// destination waits for a connection slot to dest and returns the
// function that gives it back.
func (d *Deliverer) destination(dest string) func() {
	d.mu.Lock()
	sem := d.dests[dest]
	if sem == nil {
		sem = make(chan struct{}, d.cfg.MaxPerDest)
		d.dests[dest] = sem
	}
	d.mu.Unlock()
	sem <- struct{}{}
	return func() { <-sem }
}

// New returns a Deliverer.
func New(cfg Config) (*Deliverer, error) {
	cfg.setDefaults()
	if cfg.Queue == nil || cfg.Hostname == "" || cfg.Resolver == nil {
		return nil, errors.New("deliver: Queue, Hostname and Resolver are required")
	}
	d := &Deliverer{cfg: cfg, wake: make(chan struct{}, 1), due: map[string]time.Time{}, inflight: map[string]bool{}, dests: map[string]chan struct{}{}}
	if err := d.setupTransports(); err != nil {
		return nil, err
	}
	return d, nil
}

// Notify schedules a newly queued message at once. It does not block.
func (d *Deliverer) Notify(m *queue.Message) {
	d.mu.Lock()
	d.due[m.ID] = time.Time{}
	d.mu.Unlock()
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// nextDue is when a message next has something to do, and whether it has
// anything at all: the next attempt of a pending recipient, or of the
// report of a failed one (NextAttempt, zero until a report failed).
func nextDue(m *queue.Message) (time.Time, bool) {
	var t time.Time
	any := false
	for _, r := range m.Recipients {
		if r.Status == queue.Pending || r.Status == queue.Failed && !r.Bounced {
			if !any || r.NextAttempt.Before(t) {
				t = r.NextAttempt
			}
			any = true
		}
	}
	return t, any
}

// Run delivers until ctx is done, then waits for deliveries in progress
// (each ends at its next step once ctx is done).
func (d *Deliverer) Run(ctx context.Context) {
	msgs, err := d.cfg.Queue.List()
	if err != nil {
		d.cfg.Log.Error("reading the queue", "err", err)
	}
	d.mu.Lock()
	for _, m := range msgs {
		if t, ok := nextDue(m); ok {
			d.due[m.ID] = t
		} else if m.Done() {
			// Finished just before a crash, not yet removed.
			if err := d.cfg.Queue.Remove(m.ID); err != nil {
				d.cfg.Log.Error("removing a finished message", "id", m.ID, "err", err)
			}
		}
	}
	d.mu.Unlock()
	d.cfg.Log.Info("delivery started", "queued", len(msgs))
	metrics.Default.SetGaugeFunc("elit_queue_messages", "Queued messages with something left to do.", func() float64 {
		d.mu.Lock()
		defer d.mu.Unlock()
		return float64(len(d.due))
	})
	sem := make(chan struct{}, d.cfg.MaxParallel)
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		now := d.cfg.Now()
		next := now.Add(time.Minute)
		// Choosing a message and marking it in flight are one step under
		// d.mu, so that an operator command (own) cannot take it in
		// between and have a delivery write its envelope back after a drop.
		d.mu.Lock()
		var start []string
		full := false
		for id, t := range d.due {
			if d.inflight[id] {
				continue
			}
			if t.After(now) {
				if t.Before(next) {
					next = t
				}
				continue
			}
			select {
			case sem <- struct{}{}:
				d.inflight[id] = true
				start = append(start, id)
			default:
				full = true
				next = now // look again when one ends
			}
		}
		d.mu.Unlock()
		for _, id := range start {
			if d.claimed != nil {
				d.claimed(id)
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				d.process(ctx, id)
				d.mu.Lock()
				delete(d.inflight, id)
				d.mu.Unlock()
				<-sem
				select {
				case d.wake <- struct{}{}:
				default:
				}
			}()
		}
		wait := next.Sub(now)
		if wait < 0 {
			wait = 0
		}
		if full && wait == 0 {
			wait = 50 * time.Millisecond // the semaphore is full
		}
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-d.wake:
		case <-timer.C:
		}
		timer.Stop()
	}
}

// process does what is due for one message and reschedules it.
func (d *Deliverer) process(ctx context.Context, id string) {
	log := d.cfg.Log.With("id", id)
	m, err := d.cfg.Queue.Get(id)
	if err != nil {
		if !errors.Is(err, queue.ErrNotFound) {
			log.Error("reading a queued message", "err", err)
		}
		d.forget(id)
		return
	}
	now := d.cfg.Now()
	expired := now.Sub(m.Received) > d.cfg.Lifetime
	// Recipients due now, by transport and destination domain.
	type key struct {
		t      *Transport
		domain string
		from   string // list members each get their bounce address (VERP)
	}
	byDomain := map[key][]int{}
	var order []key
	for i, r := range m.Recipients {
		if r.Status != queue.Pending || r.NextAttempt.After(now) {
			continue
		}
		if expired {
			m.Recipients[i].Status = queue.Failed
			m.Recipients[i].LastError = "5.4.7 delivery time expired: " + r.LastError
			m.Recipients[i].NextAttempt = time.Time{} // to be reported now
			continue
		}
		k := key{d.transportFor(m, r), domainOf(r.Address), m.From}
		if r.List != "" && d.cfg.ListBounce != nil && d.cfg.ListSigner != nil {
			k.from = d.cfg.ListSigner.BounceAddress(r.List, r.Address)
		}
		if k.t.Type != "direct" {
			k.domain = "" // one transaction to the relay for every domain
		}
		if _, ok := byDomain[k]; !ok {
			order = append(order, k)
		}
		byDomain[k] = append(byDomain[k], i)
	}
	var relayed []int
	for _, k := range order {
		if ctx.Err() != nil {
			break
		}
		idx := byDomain[k]
		start := time.Now()
		res := d.deliverDomain(ctx, m, k.from, k.t, k.domain, idx)
		transactionTime.Add(time.Since(start))
		transactionCount.Inc()
		for k, i := range idx {
			d.record(m, i, res[k], now)
			if res[k].err == nil && res[k].relayed {
				relayed = append(relayed, i)
			}
		}
		if err := d.cfg.Queue.Update(m); err != nil {
			log.Error("recording delivery results", "err", err)
			d.reschedule(m.ID, now.Add(d.cfg.FirstRetry))
			return
		}
	}
	if err := d.notifyRelayed(m, relayed); err != nil {
		log.Error("relayed notice", "err", err)
	}
	if err := d.bounce(m); err != nil {
		d.bounceFailed(m, err)
	}
	if err := d.warnDelayed(m, d.cfg.Now()); err != nil {
		log.Error("delay notice", "err", err)
	}
	if m.Done() {
		if err := d.cfg.Queue.Remove(m.ID); err != nil {
			log.Error("removing a finished message", "err", err)
		}
		d.forget(m.ID)
		return
	}
	if t, ok := nextDue(m); ok {
		d.reschedule(m.ID, t)
	} else {
		d.forget(m.ID) // held recipients only
	}
}

// bounceFailed reschedules the reports of m that could not be made (the
// DSN could not be written or queued: a full disk, say) on the backoff
// of deliveries, doubling with each failed attempt, rather than at once:
// the cause rarely goes away in a moment, and retrying at once is a hot
// loop filling the log.
func (d *Deliverer) bounceFailed(m *queue.Message, err error) {
	now := d.cfg.Now()
	var next time.Time
	attempts := 0
	for i := range m.Recipients {
		r := &m.Recipients[i]
		if r.Status != queue.Failed || r.Bounced {
			continue
		}
		r.BounceAttempts++
		r.NextAttempt = now.Add(d.backoff(r.BounceAttempts))
		if next.IsZero() || r.NextAttempt.Before(next) {
			next, attempts = r.NextAttempt, r.BounceAttempts
		}
	}
	log := d.cfg.Log.With("id", m.ID)
	if next.IsZero() {
		log.Error("bounce failed", "err", err) // the reports were made: only recording them failed
	} else {
		log.Error("bounce failed", "err", err, "attempt", attempts, "next", next.Format(time.RFC3339))
	}
	if err := d.cfg.Queue.Update(m); err != nil {
		// The schedule in memory (nextDue of m) still holds until a restart.
		log.Error("recording the bounce failure", "err", err)
	}
}

func (d *Deliverer) forget(id string) {
	d.mu.Lock()
	delete(d.due, id)
	d.mu.Unlock()
}

func (d *Deliverer) reschedule(id string, t time.Time) {
	d.mu.Lock()
	d.due[id] = t
	d.mu.Unlock()
}

// record applies one delivery result to recipient i.
func (d *Deliverer) record(m *queue.Message, i int, res result, now time.Time) {
	r := &m.Recipients[i]
	r.Attempts++
	log := d.cfg.Log.With("id", m.ID, "to", r.Address, "attempt", r.Attempts)
	if res.host != "" {
		log = log.With("host", res.host, "tls", res.tls, "transport", res.transport)
	}
	switch {
	case res.err == nil:
		deliveriesTotal.Inc("delivered")
		r.Status = queue.Delivered
		r.LastError = ""
		log.Info("delivered", "reply", res.reply)
	case res.permanent:
		deliveriesTotal.Inc("failed")
		r.Status = queue.Failed
		r.LastError = res.err.Error()
		r.NextAttempt = time.Time{} // to be reported now
		log.Warn("delivery failed", "err", res.err)
	default:
		deliveriesTotal.Inc("deferred")
		r.LastError = res.err.Error()
		r.NextAttempt = now.Add(d.backoff(r.Attempts))
		log.Info("delivery deferred", "err", res.err, "next", r.NextAttempt.Format(time.RFC3339))
	}
}

// backoff is the delay after the n-th failed attempt: FirstRetry doubled
// each time up to MaxRetry, ±10% so that retries spread out.
func (d *Deliverer) backoff(n int) time.Duration {
	delay := d.cfg.FirstRetry
	for i := 1; i < n && delay < d.cfg.MaxRetry; i++ {
		delay *= 2
	}
	delay = min(delay, d.cfg.MaxRetry)
	jitter := time.Duration(rand.Int64N(int64(delay)/5+1)) - delay/10
	return delay + jitter
}

// domainOf returns the domain of addr in the form to route, look up and
// compare it in: A-labels (mailaddr.CanonicalDomain: bücher.example is
// xn--bcher-kva.example), or an address literal as mailaddr.Parse
// writes it.
func domainOf(addr string) string {
	d := addr[strings.LastIndexByte(addr, '@')+1:]
	if c, err := mailaddr.CanonicalDomain(d); err == nil {
		return c
	}
	return strings.ToLower(d)
}

// result is the outcome of one recipient's attempt.
type result struct {
	err       error
	permanent bool
	reply     string
	host, tls string
	transport string
	relayed   bool // delivered to a server without DSN, NOTIFY=SUCCESS asked
}

func tempFail(format string, args ...any) result {
	return result{err: fmt.Errorf(format, args...)}
}

func permFail(format string, args ...any) result {
	return result{err: fmt.Errorf(format, args...), permanent: true}
}
