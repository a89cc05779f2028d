package main

import (
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// TestDeliverMaxPerDestination: with -max-per-destination 1, messages to
// one destination go out one connection at a time, though -max-deliveries
// would let them all go at once.
func TestDeliverMaxPerDestination(t *testing.T) {
	// The destination MX holds each connection a while, then turns it
	// away (421), so that the messages wait for their next retry.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	var open, most, accepted atomic.Int32
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			n := open.Add(1)
			for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
			}
			accepted.Add(1)
			go func() {
				defer c.Close()
				time.Sleep(400 * time.Millisecond)
				open.Add(-1)
				c.Write([]byte("421 4.3.2 busy, try later\r\n"))
			}()
		}
	}()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	resolver := dnsServer(t, map[string]string{"example.com": "127.0.0.1"})
	s := deliveryServer(t, resolver, port, "-max-per-destination", "1", "-retry-first", "1h", "-retry-max", "2h")
	const messages = 3
	for range messages {
		c := mxData(t, s.mx, "<x@example.net>", "<din@example.org>") // forwarded to romain@example.com
		c.send("Subject: one at a time\r\n\r\nhello\r\n.\r\n")
		c.expect("250")
	}
	waitFor(t, "an attempt of each message", func() bool { return accepted.Load() >= messages })
	if got := most.Load(); got != 1 {
		t.Errorf("%d connections at once to the destination, want at most 1 (-max-per-destination 1)", got)
	}
}
