package freeport

import (
	"fmt"
	"net"
	"testing"
)

func TestGet(t *testing.T) {
	seen := map[int]bool{}
	for range 20 {
		p := Get(t)
		if p < low || p >= high {
			t.Fatalf("port %d outside %d-%d", p, low, high)
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			t.Fatalf("port %d is not free: %v", p, err)
		}
		defer l.Close()
		seen[p] = true
	}
	if len(seen) < 2 {
		t.Fatalf("always the same port: %v", seen)
	}
}
