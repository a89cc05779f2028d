package deliver

import (
	"context"
	"errors"
	"testing"
	"time"

	"elit.local/elit/dns"
	"elit.local/elit/queue"
)

// TestClaim: a message has one owner at a time. A claim that waits is
// told (waiting) and gets the message at its release; one whose context
// ends first gives up with the context's error.
func TestClaim(t *testing.T) {
	s := newSchedule(1)
	ctx := context.Background()
	s.mu.Lock()
	release := s.take("m1", true)
	s.mu.Unlock()
	if release == nil {
		t.Fatal("take failed on a free message")
	}
	s.mu.Lock()
	again := s.take("m1", true)
	s.mu.Unlock()
	if again != nil {
		t.Fatal("a message claimed twice")
	}

	cctx, cancel := context.WithCancel(ctx)
	waited := make(chan string, 1)
	errc := make(chan error, 1)
	go func() {
		_, err := s.claim(cctx, "m1", func(id string) { waited <- id })
		errc <- err
	}()
	if id := <-waited; id != "m1" {
		t.Errorf("waiting for %q", id)
	}
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Errorf("a cancelled claim: %v", err)
	}

	got := make(chan func(), 1)
	go func() {
		r, err := s.claim(ctx, "m1", nil)
		if err != nil {
			t.Error(err)
		}
		got <- r
	}()
	select {
	case <-got:
		t.Fatal("claimed while a delivery has it")
	case <-time.After(50 * time.Millisecond):
	}
	release()
	select {
	case r := <-got:
		r()
	case <-time.After(5 * time.Second):
		t.Fatal("the release did not wake the claim")
	}
	if s.running != 0 || len(s.claimed) != 0 {
		t.Errorf("after the releases: %d running, claimed %v", s.running, s.claimed)
	}
}

// TestClaimDue: Run claims the due messages nobody works on, no more
// than its limit at once, and says when to look again.
func TestClaimDue(t *testing.T) {
	s := newSchedule(1)
	now := time.Unix(1000, 0)
	s.set("due1", time.Time{})
	s.set("due2", now)
	s.set("later", now.Add(10*time.Second))
	s.set("owned", time.Time{})
	s.mu.Lock()
	s.take("owned", false)
	s.mu.Unlock()
	start, next := s.claimDue(now, 1)
	if len(start) != 1 || start[0].id != "due1" && start[0].id != "due2" || !next.Equal(now.Add(10*time.Second)) {
		t.Fatalf("claimed %+v, next %v", start, next)
	}
	if more, _ := s.claimDue(now, 1); len(more) != 0 {
		t.Errorf("over the limit: %+v", more)
	}
	s.forget(start[0].id) // delivered
	start[0].release()
	select {
	case <-s.wake:
	default:
		t.Error("a release does not wake Run")
	}
	if more, _ := s.claimDue(now, 1); len(more) != 1 || more[0].id == start[0].id {
		t.Errorf("after the release: %+v", more)
	}
}

// TestDestinationCancelled: a wait for a connection slot ends with the
// context.
func TestDestinationCancelled(t *testing.T) {
	s := newSchedule(1)
	release, err := s.destination(context.Background(), "example.com")
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := s.destination(ctx, "example.com"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a full destination: %v", err)
	}
	other, err := s.destination(context.Background(), "example.net")
	if err != nil {
		t.Errorf("another destination: %v", err)
	} else {
		other()
	}
}

// TestOperatorCommandCancelled: an operator command on a message a
// delivery works on waits for it, and gives up when its context ends.
func TestOperatorCommandCancelled(t *testing.T) {
	d := newDeliverer(t, Config{Resolver: &dns.Mem{}})
	m := &queue.Message{From: "sender@example.net", Recipients: []queue.Recipient{{Address: "a@example.com"}}}
	queueMessage(t, d, m)
	d.sched.set(m.ID, time.Time{})
	start, _ := d.sched.claimDue(time.Now(), 1)
	if len(start) != 1 {
		t.Fatalf("claimed %+v", start)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := d.Do(ctx, "hold", m.ID); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("hold while delivering: %v", err)
	}
	start[0].release()
	if out, err := d.Do(context.Background(), "hold", m.ID); err != nil {
		t.Errorf("hold after the delivery: %v", err)
	} else if got, _ := d.cfg.Queue.Get(m.ID); got.Recipients[0].Status != queue.Held {
		t.Errorf("%s, but %+v", out, got.Recipients[0])
	}
}

// TestRunWakesAtRelease: with one delivery at a time, the next message
// starts when the delivery before it ends, not at the next timer (a
// minute away).
func TestRunWakesAtRelease(t *testing.T) {
	p := newPeer(t, nil)
	d := newDeliverer(t, Config{Resolver: loopbackMX("example.com"), Port: p.Port, MaxParallel: 1})
	for range 3 {
		m := &queue.Message{From: "sender@example.net", Recipients: []queue.Recipient{{Address: "a@example.com"}}}
		queueMessage(t, d, m)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		d.Run(ctx)
		close(done)
	}()
	deadline := time.Now().Add(20 * time.Second)
	for len(p.Received()) < 3 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	if n := len(p.Received()); n != 3 {
		t.Errorf("%d of 3 messages delivered", n)
	}
}
