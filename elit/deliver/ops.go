package deliver

import (
	"context"
	"errors"
	"fmt"

	"elit.local/elit/queue"
)

// Operator actions on a queued message. Each claims the message first
// (waiting while a delivery works on it, until its context is done), so
// that the two never overwrite each other.

// own claims message id for an operator command and returns the function
// that releases it.
func (d *Deliverer) own(ctx context.Context, id string) (func(), error) {
	release, err := d.sched.claim(ctx, id, d.waiting)
	if err == nil {
		d.takeFresh(id) // the command reads and changes the queue's copy
	}
	return release, err
}

// edit applies an operator command that only edits the envelope (hold,
// release, retry) to a stored message, stores it and reschedules it. It
// returns how many recipients it changed.
func (d *Deliverer) edit(ctx context.Context, id, cmd string) (int, error) {
	release, err := d.own(ctx, id)
	if err != nil {
		return 0, err
	}
	defer release()
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
func (d *Deliverer) Hold(ctx context.Context, id string) (int, error) {
	return d.edit(ctx, id, "hold")
}

// Release makes held recipients pending again, due now.
func (d *Deliverer) Release(ctx context.Context, id string) (int, error) {
	return d.edit(ctx, id, "release")
}

// Retry makes the pending recipients due now.
func (d *Deliverer) Retry(ctx context.Context, id string) (int, error) {
	return d.edit(ctx, id, "retry")
}

// Drop gives up on the undelivered recipients of a message: the sender
// gets a DSN unless bounce is false, and the message leaves the queue.
func (d *Deliverer) Drop(ctx context.Context, id string, bounce bool) (int, error) {
	release, err := d.own(ctx, id)
	if err != nil {
		return 0, err
	}
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
// "drop-quietly"; "requiretls-on", "requiretls-off", "tlsrequired-no",
// "tlsrequired-yes": queue.Message.Apply) on message id and says what it
// did. It gives up when ctx is done before a delivery of the message in
// progress ends.
func (d *Deliverer) Do(ctx context.Context, cmd, id string) (string, error) {
	var n int
	var err error
	switch cmd {
	case "requiretls-on", "requiretls-off", "tlsrequired-no", "tlsrequired-yes":
		n, err = d.edit(ctx, id, cmd)
	case "hold":
		n, err = d.Hold(ctx, id)
	case "release":
		n, err = d.Release(ctx, id)
	case "retry":
		n, err = d.Retry(ctx, id)
	case "drop":
		n, err = d.Drop(ctx, id, true)
	case "drop-quietly":
		n, err = d.Drop(ctx, id, false)
	default:
		return "", fmt.Errorf("unknown command %q", cmd)
	}
	if err != nil {
		return "", err
	}
	d.cfg.Log.Info("operator", "command", cmd, "id", id, "recipients", n)
	return fmt.Sprintf("%s %s: %d recipients", cmd, id, n), nil
}
