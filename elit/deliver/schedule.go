package deliver

import (
	"context"
	"sync"
	"time"

	"elit.local/elit/metrics"
)

// The schedule is the deliverer's plan in memory, rebuilt from the queue
// at start: when each queued message is next due, and who works on
// which. One loop (Run) starts the deliveries of due messages, up to
// MaxParallel at once, each in its own goroutine; operator commands
// (ops.go) come from other goroutines. A message is worked on by one of
// them at a time: whoever claims it owns it until it releases it, and
// take is the only way to claim one. Nothing polls: a release wakes Run
// and the claims that wait, and every wait ends with its context.
type schedule struct {
	mu       sync.Mutex
	due      map[string]time.Time // queued messages with something to do, by next attempt
	claimed  map[string]bool      // messages a delivery or an operator command works on
	running  int                  // of them, deliveries started by Run
	released chan struct{}        // closed, and replaced, at each release
	wake     chan struct{}        // tells Run to look again: a new message, a release

	perDest int                      // connections to one destination at once
	dests   map[string]chan struct{} // per destination: a semaphore
}

func newSchedule(perDest int) *schedule {
	return &schedule{due: map[string]time.Time{}, claimed: map[string]bool{}, released: make(chan struct{}),
		wake: make(chan struct{}, 1), perDest: perDest, dests: map[string]chan struct{}{}}
}

// kick tells Run to look at the schedule again. It does not block.
func (s *schedule) kick() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// set makes message id due at t (zero: now).
func (s *schedule) set(id string, t time.Time) {
	s.mu.Lock()
	s.due[id] = t
	s.mu.Unlock()
}

// forget takes message id off the schedule: nothing left to do.
func (s *schedule) forget(id string) {
	s.mu.Lock()
	delete(s.due, id)
	s.mu.Unlock()
}

// setNew makes message id, just queued, due now. It reports whether the
// schedule knew nothing of id before (neither due nor claimed).
func (s *schedule) setNew(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, due := s.due[id]
	known := due || s.claimed[id]
	s.due[id] = time.Time{}
	return !known
}

// dueAt returns when message id is due, if it is scheduled.
func (s *schedule) dueAt(id string) (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.due[id]
	return t, ok
}

func (s *schedule) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.due)
}

// take claims message id when nobody works on it, and returns the
// function that releases it; nil when someone does. delivery counts the
// claim among Run's deliveries. s.mu is held.
func (s *schedule) take(id string, delivery bool) func() {
	if s.claimed[id] {
		return nil
	}
	s.claimed[id] = true
	if delivery {
		s.running++
	}
	return func() {
		s.mu.Lock()
		delete(s.claimed, id)
		if delivery {
			s.running--
		}
		close(s.released)
		s.released = make(chan struct{})
		s.mu.Unlock()
		s.kick()
	}
}

// claim claims message id for an operator command, waiting while a
// delivery (or another command) works on it, until ctx is done. waiting,
// when set, is called once if it has to wait.
func (s *schedule) claim(ctx context.Context, id string, waiting func(string)) (func(), error) {
	for {
		s.mu.Lock()
		release := s.take(id, false)
		released := s.released
		s.mu.Unlock()
		if release != nil {
			return release, nil
		}
		if waiting != nil {
			waiting(id)
			waiting = nil
		}
		select {
		case <-released:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// job is a message Run claimed for delivery.
type job struct {
	id      string
	release func()
}

// claimDue claims for delivery the messages due at now that nobody works
// on, while fewer than limit deliveries run. next is when to look again:
// the next due time (at most a minute away); a release or a new message
// wakes Run before.
func (s *schedule) claimDue(now time.Time, limit int) (start []job, next time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	next = now.Add(time.Minute)
	for id, t := range s.due {
		if t.After(now) {
			if t.Before(next) {
				next = t
			}
			continue
		}
		if s.running >= limit {
			continue // a release wakes Run
		}
		if release := s.take(id, true); release != nil {
			start = append(start, job{id, release})
		}
	}
	return start, next
}

// destination waits for a connection slot to dest, until ctx is done,
// and returns the function that gives it back.
func (s *schedule) destination(ctx context.Context, dest string) (func(), error) {
	s.mu.Lock()
	sem := s.dests[dest]
	if sem == nil {
		sem = make(chan struct{}, s.perDest)
		s.dests[dest] = sem
	}
	s.mu.Unlock()
	select {
	case sem <- struct{}{}:
		return func() { <-sem }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Load schedules the messages the queue holds. Run calls it when nobody
// did; a server calls it before it accepts mail, so that a message it
// lists is never also one Notify tells of (Notify's copy would then be
// older than what a delivery of the listing recorded).
func (d *Deliverer) Load() {
	d.loadOnce.Do(d.load)
}

func (d *Deliverer) load() {
	msgs, err := d.cfg.Queue.List()
	if err != nil {
		d.cfg.Log.Error("reading the queue", "err", err)
	}
	for _, m := range msgs {
		if t, ok := nextDue(m); ok {
			d.sched.set(m.ID, t)
		} else if m.Done() {
			// Finished just before a crash, not yet removed.
			if err := d.cfg.Queue.RemoveLazily(m.ID); err != nil {
				d.cfg.Log.Error("removing a finished message", "id", m.ID, "err", err)
			}
		}
	}
	d.cfg.Log.Info("queue loaded", "queued", len(msgs))
}

// Run delivers until ctx is done, then waits for deliveries in progress
// (each ends at its next step once ctx is done).
func (d *Deliverer) Run(ctx context.Context) {
	d.Load()
	metrics.Default.SetGaugeFunc("elit_queue_messages", "Queued messages with something left to do.", func() float64 {
		return float64(d.sched.len())
	})
	var wg sync.WaitGroup
	defer d.pool.close() // after the deliveries, which may keep sessions
	defer wg.Wait()
	for {
		now := d.cfg.Now()
		// Choosing a message and claiming it are one step (claimDue), so
		// that an operator command cannot take it in between and have a
		// delivery write its envelope back after a drop.
		start, next := d.sched.claimDue(now, d.cfg.MaxParallel)
		for _, c := range start {
			if d.claimed != nil {
				d.claimed(c.id)
			}
			wg.Go(func() {
				defer c.release()
				d.process(ctx, c.id)
			})
		}
		timer := time.NewTimer(max(next.Sub(now), 0))
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-d.sched.wake:
		case <-timer.C:
		}
		timer.Stop()
	}
}
