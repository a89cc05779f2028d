package receive

import (
	"crypto/tls"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"
)

// connLimiter counts open connections, in all and per client address.
type connLimiter struct {
	max, perIP int
	mu         sync.Mutex
	total      int
	byIP       map[netip.Addr]int
}

func newConnLimiter(max, perIP int) *connLimiter {
	return &connLimiter{max: max, perIP: perIP, byIP: map[netip.Addr]int{}}
}

func (l *connLimiter) acquire(ip netip.Addr) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.total >= l.max || l.byIP[ip] >= l.perIP {
		return false
	}
	l.total++
	l.byIP[ip]++
	return true
}

func (l *connLimiter) release(ip netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total--
	if l.byIP[ip]--; l.byIP[ip] <= 0 {
		delete(l.byIP, ip)
	}
}

// limitListener refuses connections over the limits and bounds the
// lifetime of the others.
type limitListener struct {
	net.Listener
	s     *Server
	plain bool // the first bytes are SMTP, not TLS
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip := remoteIP(c)
		if !l.s.conns.acquire(ip) {
			l.s.cfg.Log.Warn("connection refused: too many connections", "client", ip)
			go func() {
				if l.plain {
					c.SetWriteDeadline(time.Now().Add(5 * time.Second))
					c.Write([]byte("421 4.7.0 " + l.s.cfg.Hostname + " too many connections, try again later\r\n"))
				}
				c.Close()
			}()
			continue
		}
		tc := &trackedConn{Conn: c, release: func() { l.s.conns.release(ip) }}
		tc.timer = time.AfterFunc(l.s.cfg.MaxSessionTime, func() { tc.Close() })
		return tc, nil
	}
}

// trackedConn is an accepted connection: it gives its slot back when
// closed, and can be told to close after the next reply is written.
type trackedConn struct {
	net.Conn
	release    func()
	timer      *time.Timer
	once       sync.Once
	closeAfter atomic.Bool
}

func (c *trackedConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if c.closeAfter.Load() {
		c.Close()
	}
	return n, err
}

func (c *trackedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.timer.Stop()
		c.release()
	})
	return err
}

// tracked returns the trackedConn under a go-smtp connection.
func tracked(c *smtp.Conn) *trackedConn {
	nc := c.Conn()
	if t, ok := nc.(*tls.Conn); ok {
		nc = t.NetConn()
	}
	tc, _ := nc.(*trackedConn)
	return tc
}

func remoteIP(c net.Conn) netip.Addr {
	if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}

// failureCounter counts failed logins per client address over a window.
type failureCounter struct {
	window time.Duration
	now    func() time.Time
	mu     sync.Mutex
	byIP   map[netip.Addr][]time.Time
}

func newFailureCounter(window time.Duration, now func() time.Time) *failureCounter {
	return &failureCounter{window: window, now: now, byIP: map[netip.Addr][]time.Time{}}
}

// add records a failure and returns the count in the window.
func (f *failureCounter) add(ip netip.Addr) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	t := f.prune(ip)
	t = append(t, f.now())
	f.byIP[ip] = t
	if len(f.byIP) > 10000 { // bound the memory an address sweep can take
		for k := range f.byIP {
			if f.prune(k) == nil {
				delete(f.byIP, k)
			}
		}
	}
	return len(t)
}

func (f *failureCounter) count(ip netip.Addr) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.prune(ip))
}

func (f *failureCounter) prune(ip netip.Addr) []time.Time {
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
