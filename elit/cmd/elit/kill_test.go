package main

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/textproto"
	"strings"
	"sync"
	"testing"
	"time"
)

// acked is a message the server answered 250 to.
type acked struct {
	id   string
	body string
}

// sendLoop sends messages on one connection after another until stop is
// closed or the server goes away, and reports each acknowledged message.
func sendLoop(addr, tag string, stop <-chan struct{}, out chan<- acked) {
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		default:
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return
		}
		c.SetDeadline(time.Now().Add(30 * time.Second))
		tp := textproto.NewConn(c)
		step := func(cmd string, want int) (string, error) {
			if cmd != "" {
				if err := tp.PrintfLine("%s", cmd); err != nil {
					return "", err
				}
			}
			_, msg, err := tp.ReadResponse(want)
			return msg, err
		}
		_, err = step("", 220)
		if err == nil {
			_, err = step("EHLO client.example.net", 250)
		}
		for j := 0; err == nil && j < 3; j++ {
			body := fmt.Sprintf("Subject: %s-%d-%d\r\nMessage-ID: <%s.%d.%d@example.net>\r\n\r\n%s", tag, i, j, tag, i, j,
				strings.Repeat(fmt.Sprintf("line of %s %d %d\r\n", tag, i, j), rand.IntN(2000)))
			if _, err = step("MAIL FROM:<x@example.net>", 250); err != nil {
				break
			}
			if _, err = step("RCPT TO:<team@example.org>", 250); err != nil {
				break
			}
			if _, err = step("DATA", 354); err != nil {
				break
			}
			if _, err = io.WriteString(c, body+".\r\n"); err != nil {
				break
			}
			var msg string
			if msg, err = step("", 250); err != nil {
				break
			}
			if ids := queued(msg); len(ids) == 1 {
				out <- acked{ids[0], body}
			}
		}
		c.Close()
	}
}

// killRound runs senders clients (sendLoop, tagged tag) against s, kills
// s with SIGKILL after wait, restarts it, and returns what was
// acknowledged before the kill.
func killRound(s *server, tag string, senders int, wait time.Duration) []acked {
	stop := make(chan struct{})
	out := make(chan acked, 1000)
	var wg sync.WaitGroup
	for g := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sendLoop(s.mx, fmt.Sprintf("%sg%d", tag, g), stop, out)
		}()
	}
	time.Sleep(wait)
	s.kill()
	close(stop)
	wg.Wait()
	close(out)
	var got []acked
	for a := range out {
		got = append(got, a)
	}
	s.log.Reset()
	s.start()
	return got
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
