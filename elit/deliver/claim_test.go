package deliver

import (
	"context"
	"errors"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"elit.local/elit/queue"
)

// TestDropWhileClaimed: an operator drop that comes just as Run claims a
// message for delivery waits for that delivery to end. Were it to get in
// between Run choosing the message and marking it in flight (as it
// could), the drop would remove the message while the delivery works on
// it, and the delivery's update would write the envelope back without
// its data. The hooks make the drop come at exactly that point.
func TestDropWhileClaimed(t *testing.T) {
	inside := make(chan struct{}, 1)  // the drop owns the message (reporting the failure)
	waiting := make(chan struct{}, 1) // the drop waits for the delivery
	proceed := make(chan struct{})    // lets the drop go on
	dropDone := make(chan struct{})
	var dropErr error
	var interleaved atomic.Bool
	d := newDeliverer(t, Config{
		Resolver: loopbackMX("example.com"),
		// The list takes its members' failures: the drop reports there,
		// which is where it is held.
		ListBounce: func(list, member, reason string) {
			select {
			case inside <- struct{}{}:
			default:
			}
			<-proceed
		},
		Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if interleaved.Load() {
				// The delivery has read the envelope: let the drop remove
				// the message before the delivery records its attempt.
				close(proceed)
				<-dropDone
			}
			return nil, errors.New("connection refused")
		},
	})
	d.waiting = func(string) {
		select {
		case waiting <- struct{}{}:
		default:
		}
	}
	d.claimed = func(id string) {
		go func() {
			defer close(dropDone)
			_, dropErr = d.Drop(context.Background(), id, true)
		}()
		select {
		case <-inside:
			interleaved.Store(true)
		case <-waiting:
			close(proceed)
		case <-time.After(10 * time.Second):
			t.Error("the drop neither ran nor waited")
			close(proceed)
		}
	}
	m := &queue.Message{From: "sender@example.net", Recipients: []queue.Recipient{
		{Address: "member@example.com", List: "team@example.org"},
	}}
	queueMessage(t, d, m)

	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() {
		d.Run(ctx)
		close(ran)
	}()
	select {
	case <-dropDone:
	case <-time.After(10 * time.Second):
		t.Fatal("the drop did not end")
	}
	cancel()
	<-ran
	if dropErr != nil {
		t.Errorf("Drop: %v", dropErr)
	}
	if interleaved.Load() {
		t.Error("the drop owned the message while the delivery had claimed it")
	}
	if got, err := d.cfg.Queue.Get(m.ID); !errors.Is(err, queue.ErrNotFound) {
		t.Errorf("after the drop the message is still queued (%v): %+v", err, got)
	}
	entries, _ := os.ReadDir(d.cfg.Queue.Dir())
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), m.ID) {
			t.Errorf("left in the queue: %s", e.Name())
		}
	}
}
