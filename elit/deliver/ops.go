package deliver

import (
	"context"
	"errors"
	"fmt"
	"time"

	"elit.local/elit/queue"
)

// Operator actions on a queued message. Each waits until no delivery is
// working on the message, so that the two never overwrite each other.

// own marks message id as worked on (waiting for a delivery in progress
// to end) and returns the function that releases it. Run marks a message
// in the same step as it chooses it, so the two never hold one message.
func (d *Deliverer) own(id string) func() {
	for waited := false; ; waited = true {
		d.mu.Lock()
		if !d.inflight[id] {
			d.inflight[id] = true
			d.mu.Unlock()
			return func() {
				d.mu.Lock()
				delete(d.inflight, id)
				d.mu.Unlock()
				d.kick()
			}
		}
		d.mu.Unlock()
		if !waited && d.waiting != nil {
			d.waiting(id)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (d *Deliverer) kick() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// edit applies an operator command that only edits the envelope (hold,
// release, retry) to a stored message, stores it and reschedules it. It
// returns how many recipients it changed.
func (d *Deliverer) edit(id, cmd string) (int, error) {
	defer d.own(id)()
	m, err := d.cfg.Queue.Get(id)
	if err != nil {
		return 0, err
	}
	n, err := m.Apply(cmd)
	if err != nil || n == 0 {
		return 0, err
	}
	if err := d.cfg.Queue.Update(m); err != nil {
		return 0, err
	}
	if t, ok := nextDue(m); ok {
		d.reschedule(id, t)
	} else {
		d.forget(id)
	}
	return n, nil
}

// Hold stops delivery of the pending recipients of a message.
func (d *Deliverer) Hold(id string) (int, error) { return d.edit(id, "hold") }

// Release makes held recipients pending again, due now.
func (d *Deliverer) Release(id string) (int, error) { return d.edit(id, "release") }

// Retry makes the pending recipients due now.
func (d *Deliverer) Retry(id string) (int, error) { return d.edit(id, "retry") }

// Drop gives up on the undelivered recipients of a message: the sender
// gets a DSN unless bounce is false, and the message leaves the queue.
func (d *Deliverer) Drop(id string, bounce bool) (int, error) {
	release := d.own(id)
	defer release()
	m, err := d.cfg.Queue.Get(id)
	if err != nil {
		return 0, err
	}
	n := m.Drop(bounce)
	if err := d.bounce(m); err != nil {
		return n, err
	}
	if err := d.cfg.Queue.Remove(id); err != nil && !errors.Is(err, queue.ErrNotFound) {
		return n, err
	}
	d.forget(id)
	return n, nil
}

// Do runs an operator command ("hold", "release", "retry", "drop",
// "drop-quietly") on message id and says what it did.
func (d *Deliverer) Do(_ context.Context, cmd, id string) (string, error) {
	var n int
	var err error
	switch cmd {
	case "hold":
		n, err = d.Hold(id)
	case "release":
		n, err = d.Release(id)
	case "retry":
		n, err = d.Retry(id)
	case "drop":
		n, err = d.Drop(id, true)
	case "drop-quietly":
		n, err = d.Drop(id, false)
	default:
		return "", fmt.Errorf("unknown command %q", cmd)
	}
	if err != nil {
		return "", err
	}
	d.cfg.Log.Info("operator", "command", cmd, "id", id, "recipients", n)
	return fmt.Sprintf("%s %s: %d recipients", cmd, id, n), nil
}
