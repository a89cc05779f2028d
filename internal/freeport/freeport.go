// Package freeport picks loopback TCP ports for tests that hand a port to
// another program (QEMU, Pebble), which then binds it itself.
package freeport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"testing"
)

// Linux's default ephemeral range is 32768–60999; ports handed out here lie
// below it, so that the outgoing connections of tests running in parallel
// cannot take one between Get and the program's bind.
const low, high = 10000, 32768

// Get returns a TCP port on 127.0.0.1 that was free a moment ago.
func Get(t testing.TB) int {
	t.Helper()
	p, err := get()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func get() (int, error) {
	var err error
	for range 100 {
		p := low + rand.IntN(high-low)
		var l net.Listener
		if l, err = net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p)); err == nil {
			l.Close()
			return p, nil
		}
	}
	return 0, fmt.Errorf("no free port in %d-%d: %w", low, high-1, err)
}
