package main

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/textproto"
	"strings"
	"sync"
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
func killRound(s *proc, tag string, senders int, wait time.Duration) []acked {
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
