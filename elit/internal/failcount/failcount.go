// Package failcount counts failures (failed logins, error replies) per
// client over a sliding window, bounded in memory: SMTP AUTH (elit/receive)
// and the status page's logins (elit/status) limit clients with it.
package failcount

import (
	"net/netip"
	"sync"
	"time"
)

// Key is what the limits count per client: its IPv4 address, or the /64
// of its IPv6 address (one host commonly has a whole /64).
func Key(ip netip.Addr) netip.Prefix {
	if ip.Is6() && !ip.Is4In6() {
		p, _ := ip.Prefix(64)
		return p
	}
	return netip.PrefixFrom(ip.Unmap(), 32)
}

// Counter counts failures per client over a sliding window. It keeps at
// most maxPerKey times per client (enough to know a limit is reached) and
// forgets clients beyond maxKeys, so that a sweep over many addresses
// cannot take all the memory. It is safe for concurrent use.
type Counter struct {
	window time.Duration
	now    func() time.Time
	mu     sync.Mutex
	byIP   map[netip.Prefix][]time.Time
}

const (
	maxPerKey = 1000
	maxKeys   = 100_000
)

// New returns a counter over window; now is the clock (nil: time.Now).
func New(window time.Duration, now func() time.Time) *Counter {
	if now == nil {
		now = time.Now
	}
	return &Counter{window: window, now: now, byIP: map[netip.Prefix][]time.Time{}}
}

// Add records a failure and returns the count in the window.
func (f *Counter) Add(ip netip.Prefix) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	t := f.prune(ip)
	if len(t) >= maxPerKey {
		t = t[1:]
	}
	t = append(t, f.now())
	f.byIP[ip] = t
	if len(f.byIP) > maxKeys/2 {
		for k := range f.byIP {
			if f.prune(k) == nil {
				delete(f.byIP, k)
			}
		}
		for k := range f.byIP { // still too many: forget some at random
			if len(f.byIP) <= maxKeys {
				break
			}
			if k != ip {
				delete(f.byIP, k)
			}
		}
	}
	return len(t)
}

// Count returns the failures of ip in the window.
func (f *Counter) Count(ip netip.Prefix) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.prune(ip))
}

// Clients returns how many clients have failures in memory (pruned or
// not): a bound the tests check.
func (f *Counter) Clients() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.byIP)
}

func (f *Counter) prune(ip netip.Prefix) []time.Time {
	t := f.byIP[ip]
	cut := f.now().Add(-f.window)
	i := 0
	for i < len(t) && t[i].Before(cut) {
		i++
	}
	t = t[i:]
	if len(t) == 0 {
		delete(f.byIP, ip)
		return nil
	}
	f.byIP[ip] = t
	return t
}
