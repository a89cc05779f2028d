// Package deliver is the send side of Elit: it takes recipients from the
// durable queue and delivers them to the destination's mail exchangers
// (RFC 5321 §5) or to a smarthost, retries temporary failures on a
// doubling schedule, and bounces permanent ones with a DSN (RFC 3464).
// Each result is written to the queue before the next step, so a restart
// loses no recipient; the results are synced lazily with the queue's
// next sync (queue.Store.UpdateLazily), so a crash may send again what
// was delivered in the last queue.LazySync before it, and the
// transaction in flight.
//
// The parts: the schedule (schedule.go) says which message is due and
// who works on it; a delivery groups a message's due recipients by
// transport and domain, finds the hosts (MX, RFC 5321 §5.1, or a relay)
// and runs sessions with elit/smtpclient (session.go), kept open a short
// while for the next message to the same host (reuse.go), asking a TLSPolicy
// what TLS each host needs and telling a TLSReporter what it got
// (tlspolicy.go); each recipient's result goes into the queue as fields
// (result.go), which DSNs (dsn.go) and metrics read.
package deliver

import (
	"cmp"
	"context"
	"crypto/x509"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"elit.local/elit/dns"
	"elit.local/elit/lists"
	"elit.local/elit/mailaddr"
	"elit.local/elit/metrics"
	"elit.local/elit/queue"
)

// Config configures a Deliverer. Zero values take the defaults noted.
type Config struct {
	Queue    *queue.Store
	Resolver dns.Resolver // for direct delivery (required: any route may end in it)
	// Users returns the user database in use (it changes on reload), for
	// DSNs to local senders; nil, or a nil result: none.
	Users    func() Users
	Hostname string // in EHLO and in DSNs
	Log      *slog.Logger

	// Smarthost, when set (host:port), receives all mail not routed
	// elsewhere: no MX lookup.
	Smarthost string
	// ListBounce records a failed delivery to a list member; nil: the
	// failure is reported to the sender like any other. ListSigner makes
	// the members' bounce addresses (both or neither).
	ListBounce func(list, member, reason string)
	ListSigner *lists.Signer
	// Sign, when set, returns header fields (DKIM signatures) to put above
	// a notice Elit writes (a DSN) before it is queued: signed once, not
	// at each attempt.
	Sign func(msg []byte) (string, error)
	// Transports by name, and the Routes that pick them (see Route).
	Transports map[string]*Transport
	Routes     []Route
	// Port is the destination port of direct delivery ("25").
	Port string
	// RootCAs verify the destination's certificate; nil is the system's.
	RootCAs *x509.CertPool
	// TLSPolicy says what TLS each host needs (nil: Opportunistic);
	// TLSReporter is told what each connection got (nil: nobody).
	TLSPolicy   TLSPolicy
	TLSReporter TLSReporter
	// Destinations remembers what each destination domain's servers
	// offered (STARTTLS, REQUIRETLS); nil: nothing is remembered.
	Destinations *Destinations

	FirstRetry time.Duration // delay after the first failure (5 min), doubling
	MaxRetry   time.Duration // longest delay between attempts (8 h)
	Lifetime   time.Duration // then the message bounces (5 days)
	// DelayWarning is when the sender is told that a message is still
	// being retried (4 h; negative: never).
	DelayWarning time.Duration
	MaxParallel  int           // messages in delivery at once (20)
	MaxPerDest   int           // connections to one destination domain or relay at once (10)
	Timeout      time.Duration // per SMTP command (5 min), connect (30 s)
	// ReuseIdle is how long a session to a host is kept open after a
	// transaction for the next message to the same host (5 s; negative:
	// a new connection for each message), for at most ReuseMessages
	// transactions (100) and 5 minutes (reuse.go).
	ReuseIdle     time.Duration
	ReuseMessages int

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
	if c.ReuseIdle == 0 {
		c.ReuseIdle = defaultReuseIdle
	}
	if c.ReuseMessages <= 0 {
		c.ReuseMessages = defaultReuseMessages
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
	if c.TLSPolicy == nil {
		c.TLSPolicy = Opportunistic{}
	}
	if c.TLSReporter == nil {
		c.TLSReporter = noReporter{}
	}
}

var (
	deliveriesTotal  = metrics.Default.NewCounterVec("elit_deliveries_total", "Recipient delivery attempts, by result (delivered, deferred, failed).", "result")
	failuresByStep   = metrics.Default.NewCounterVec("elit_delivery_failures_total", "Recipient delivery attempts that failed, by the step of the session where they did (connect, greeting, EHLO, STARTTLS, AUTH, MAIL, RCPT, DATA; none: before a session).", "step")
	bouncesTotal     = metrics.Default.NewCounter("elit_bounces_total", "Delivery status notifications queued.")
	transactionTime  = metrics.Default.NewSeconds("elit_delivery_seconds_total", "Time spent in delivery attempts (per transport and domain).")
	transactionCount = metrics.Default.NewCounter("elit_delivery_transactions_total", "Delivery attempts (per transport and domain); with elit_delivery_seconds_total, the mean latency.")
)

// Deliverer runs deliveries. Notify tells it of a new message; Run does
// the work until its context ends.
type Deliverer struct {
	cfg   Config
	sched *schedule
	pool  *sessionPool // idle sessions for the next message to their host

	// fresh holds the envelopes of messages just queued (Notify), up to
	// maxFresh, for their first delivery: it starts from the message in
	// memory instead of reading and decoding it from the queue again.
	// An operator command on a message drops its entry (own): from then
	// on the queue has the message's state.
	freshMu sync.Mutex
	fresh   map[string]*queue.Message

	loadOnce sync.Once

	// Test hooks: claimed is called when Run has claimed a message for a
	// delivery that is about to start; waiting when an operator command
	// waits for the delivery of a message to end.
	claimed, waiting func(id string)
}

// New returns a Deliverer.
func New(cfg Config) (*Deliverer, error) {
	cfg.setDefaults()
	if cfg.Queue == nil || cfg.Hostname == "" || cfg.Resolver == nil {
		return nil, errors.New("deliver: Queue, Hostname and Resolver are required")
	}
	d := &Deliverer{cfg: cfg, sched: newSchedule(cfg.MaxPerDest),
		pool:  newSessionPool(cfg.ReuseIdle, cfg.ReuseMessages, cfg.MaxPerDest),
		fresh: map[string]*queue.Message{}}
	if err := d.setupTransports(); err != nil {
		return nil, err
	}
	return d, nil
}

// maxFresh bounds the envelopes kept in memory for first deliveries: a
// backlog beyond it is read from the queue.
const maxFresh = 1000

// Notify schedules a newly queued message at once. It does not block. m
// is the envelope as committed; Notify keeps a copy for the first
// delivery.
func (d *Deliverer) Notify(m *queue.Message) {
	c := *m
	c.Recipients = slices.Clone(m.Recipients)
	// The copy goes in before the message is due, so that its first
	// delivery finds it; it stays only if the schedule did not know the
	// message (Load listed it meanwhile: a delivery may have read it).
	d.freshMu.Lock()
	kept := len(d.fresh) < maxFresh
	if kept {
		d.fresh[m.ID] = &c
	}
	d.freshMu.Unlock()
	if !d.sched.setNew(m.ID) && kept {
		d.takeFresh(m.ID)
	}
	d.sched.kick()
}

// takeFresh returns (and forgets) the envelope Notify kept for message
// id, nil when none.
func (d *Deliverer) takeFresh(id string) *queue.Message {
	d.freshMu.Lock()
	defer d.freshMu.Unlock()
	m := d.fresh[id]
	delete(d.fresh, id)
	return m
}

// get returns message id's envelope and state: the one Notify kept, or
// the queue's.
func (d *Deliverer) get(id string) (*queue.Message, error) {
	if m := d.takeFresh(id); m != nil {
		return m, nil
	}
	return d.cfg.Queue.Get(id)
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

// process does what is due for one message and reschedules it.
func (d *Deliverer) process(ctx context.Context, id string) {
	log := d.cfg.Log.With("id", id)
	m, err := d.get(id)
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
			x := &m.Recipients[i]
			x.Status = queue.Failed
			x.Result = queue.Result{Enhanced: "5.4.7", Text: "delivery time expired", Permanent: true}
			x.LastError = "5.4.7 delivery time expired: " + r.LastError
			x.NextAttempt = time.Time{} // to be reported now
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
			if res[k].delivered && res[k].relayed {
				relayed = append(relayed, i)
			}
		}
		if m.Done() {
			// Nothing left to do: the removal below follows, and
			// recording the results first would only be undone by it.
			break
		}
		// Lazily: a crash may lose a result, and then the recipient is
		// tried again (queue: the bound on duplicates).
		if err := d.cfg.Queue.UpdateLazily(m); err != nil {
			// A full disk refuses the record but not a removal: a
			// message with nothing left to do goes rather than be sent
			// again at every retry until the disk has room.
			if m.Done() && d.cfg.Queue.RemoveLazily(m.ID) == nil {
				log.Warn("recording delivery results failed; the message was done and is removed", "err", err)
				d.forget(m.ID)
				return
			}
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
		if err := d.cfg.Queue.RemoveLazily(m.ID); err != nil {
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
	if err := d.cfg.Queue.UpdateLazily(m); err != nil {
		// The schedule in memory (nextDue of m) still holds until a restart.
		log.Error("recording the bounce failure", "err", err)
	}
}

func (d *Deliverer) forget(id string) { d.sched.forget(id) }

func (d *Deliverer) reschedule(id string, t time.Time) { d.sched.set(id, t) }

// record applies one delivery result to recipient i.
func (d *Deliverer) record(m *queue.Message, i int, res result, now time.Time) {
	r := &m.Recipients[i]
	r.Attempts++
	r.Result = res.Result
	log := d.cfg.Log.With("id", m.ID, "to", r.Address, "attempt", r.Attempts)
	if res.RemoteMTA != "" {
		log = log.With("host", res.RemoteMTA, "tls", res.tls, "transport", res.transport)
	}
	if !res.delivered {
		failuresByStep.Inc(cmp.Or(res.Step, "none"))
	}
	switch {
	case res.delivered:
		deliveriesTotal.Inc("delivered")
		metrics.Traffic.Add(metrics.Delivered, 1)
		r.Status = queue.Delivered
		r.LastError = ""
		log.Info("delivered", "reply", replyText(res.Result))
	case res.Permanent:
		deliveriesTotal.Inc("failed")
		metrics.Traffic.Add(metrics.Bounced, 1)
		r.Status = queue.Failed
		r.LastError = res.summary()
		r.NextAttempt = time.Time{} // to be reported now
		log.Warn("delivery failed", "err", r.LastError)
	default:
		deliveriesTotal.Inc("deferred")
		metrics.Traffic.Add(metrics.Deferred, 1)
		r.LastError = res.summary()
		r.NextAttempt = now.Add(d.backoff(r.Attempts))
		log.Info("delivery deferred", "err", r.LastError, "next", r.NextAttempt.Format(time.RFC3339))
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
