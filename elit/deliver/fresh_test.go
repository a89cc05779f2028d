package deliver

import (
	"context"
	"testing"

	"elit.local/elit/queue"
)

// TestFresh: the first delivery of a message Notify told of starts from
// the envelope in memory; an operator command in between wins over that
// copy (a hold before the first delivery holds), and a message the
// schedule already knew (listed by Load) keeps no copy.
func TestFresh(t *testing.T) {
	p := newPeer(t, nil)
	d := newDeliverer(t, Config{Resolver: loopbackMX("example.com"), Port: p.Port})
	ctx := context.Background()

	delivered := &queue.Message{From: "a@example.net", Recipients: []queue.Recipient{{Address: "one@example.com"}}}
	queueMessage(t, d, delivered)
	d.Notify(delivered)
	delivered.Recipients[0].Address = "changed@example.com" // the caller's envelope is not the copy
	d.process(ctx, delivered.ID)
	if _, err := d.cfg.Queue.Get(delivered.ID); err == nil {
		t.Error("the delivered message is still queued")
	}
	if got := p.Received(); len(got) != 1 || len(got[0].Rcpts) != 1 || got[0].Rcpts[0] != "one@example.com" {
		t.Errorf("the peer got %+v, want one message to one@example.com", got)
	}

	held := &queue.Message{From: "a@example.net", Recipients: []queue.Recipient{{Address: "two@example.com"}}}
	queueMessage(t, d, held)
	d.Notify(held)
	if n, err := d.Hold(ctx, held.ID); n != 1 || err != nil {
		t.Fatalf("Hold: %d, %v", n, err)
	}
	d.process(ctx, held.ID)
	m, err := d.cfg.Queue.Get(held.ID)
	if err != nil || m.Recipients[0].Status != queue.Held {
		t.Errorf("after a hold and a delivery: %+v, %v", m, err)
	}
	if got := p.Received(); len(got) != 1 {
		t.Errorf("the held message was delivered: %+v", got)
	}

	listed := &queue.Message{From: "a@example.net", Recipients: []queue.Recipient{{Address: "three@example.com"}}}
	queueMessage(t, d, listed)
	d.Load()
	d.Notify(listed)
	if d.takeFresh(listed.ID) != nil {
		t.Error("a copy was kept of a message Load had listed")
	}
}
