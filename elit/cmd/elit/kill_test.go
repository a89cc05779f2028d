package main

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"regexp"
	"testing"
	"time"
)

var msgIDRe = regexp.MustCompile(`(?m)^Message-ID: <([^>]+)>`)

// TestDeliverSIGKILL kills the server three times while clients send and
// it delivers. After the last restart every acknowledged message reaches
// the sink, and a message arrives twice only if its transaction was in
// flight at a kill (at most -max-deliveries per kill).
func TestDeliverSIGKILL(t *testing.T) {
	sk := startSink(t, "")
	_, port, _ := net.SplitHostPort(sk.Addr)
	resolver := dnsServer(t, map[string]string{"example.com": "127.0.0.1", "example.net": "127.0.0.1"})
	const parallel = 5
	s := deliveryServer(t, resolver, port, "-max-deliveries", fmt.Sprint(parallel))
	ackedIDs := map[string]bool{}
	const rounds = 3
	for round := range rounds {
		for _, a := range killRound(s, fmt.Sprintf("k%d", round), 4, time.Duration(200+rand.IntN(300))*time.Millisecond) {
			ackedIDs[msgIDRe.FindStringSubmatch(a.body)[1]] = true
		}
	}
	q := openQueue(t, s)
	for i := 0; ; i++ {
		m, err := q.List()
		if len(m) == 0 && err == nil {
			break
		}
		if i == 300 {
			for _, x := range m {
				t.Logf("left: %+v", *x)
			}
			t.Fatalf("the queue did not empty (%v):\n%s", err, s.logText())
		}
		time.Sleep(50 * time.Millisecond)
	}
	// team@example.org has two members: every message is two deliveries.
	got := map[string]int{}
	for _, m := range sk.messages() {
		if id := msgIDRe.FindStringSubmatch(m); id != nil {
			got[id[1]]++
		}
	}
	dups := 0
	for id := range ackedIDs {
		switch n := got[id]; {
		case n < 2:
			t.Errorf("message %s: %d of 2 deliveries", id, n)
		case n > 2:
			dups += n - 2
		}
	}
	t.Logf("%d messages acknowledged, %d deliveries at the sink, %d repeated", len(ackedIDs), len(sk.messages()), dups)
	if dups > rounds*parallel {
		t.Errorf("%d repeated deliveries, more than %d transactions could have been in flight", dups, rounds*parallel)
	}
}

// TestServeSIGKILL kills the server at random points while 8 clients send;
// after each restart every message that got a 250 is in the queue, intact.
func TestServeSIGKILL(t *testing.T) {
	s := startServer(t)
	var all []acked
	for round := range 4 {
		got := killRound(s, fmt.Sprintf("r%d", round), 8, time.Duration(100+rand.IntN(400))*time.Millisecond)
		t.Logf("round %d: %d messages acknowledged before SIGKILL", round, len(got))
		all = append(all, got...)
	}
	s.stop()
	if len(all) == 0 {
		t.Fatal("no message was acknowledged")
	}
	q := openQueue(t, s)
	msgs, err := q.List()
	if err != nil {
		t.Fatalf("damaged queue: %v", err)
	}
	if len(msgs) < len(all) {
		t.Errorf("%d messages in the queue, %d acknowledged", len(msgs), len(all))
	}
	for _, a := range all {
		m, err := q.Get(a.id)
		if err != nil {
			t.Errorf("acknowledged %s lost: %v", a.id, err)
			continue
		}
		if len(m.Recipients) != 2 {
			t.Errorf("%s: recipients %+v", a.id, m.Recipients)
		}
		f, err := q.Data(a.id)
		if err != nil {
			t.Errorf("%s: %v", a.id, err)
			continue
		}
		data, _ := io.ReadAll(f)
		f.Close()
		// Strip our Received field: it ends at the first line that does
		// not start with white space.
		i := bytes.Index(data, []byte("\r\nSubject: "))
		if i < 0 || string(data[i+2:]) != a.body || int64(len(data)) != m.Size {
			t.Errorf("%s: data damaged (%d bytes, size %d)", a.id, len(data), m.Size)
		}
	}
	t.Logf("%d acknowledged messages checked", len(all))
}
