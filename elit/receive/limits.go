package receive

import (
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"

	"elit.local/elit/internal/failcount"
)

// clientKey is what the limits count per client (failcount.Key).
func clientKey(ip netip.Addr) netip.Prefix { return failcount.Key(ip) }

// connLimiter counts open connections, in all and per client.
type connLimiter struct {
	max, perIP int
	mu         sync.Mutex
	total      int
	byIP       map[netip.Prefix]int
}

func newConnLimiter(max, perIP int) *connLimiter {
	return &connLimiter{max: max, perIP: perIP, byIP: map[netip.Prefix]int{}}
}

func (l *connLimiter) acquire(ip netip.Prefix) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.total >= l.max || l.byIP[ip] >= l.perIP {
		return false
	}
	l.total++
	l.byIP[ip]++
	return true
}

func (l *connLimiter) release(ip netip.Prefix) {
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
		key := clientKey(ip)
		refuse := ""
		switch {
		case l.s.errors.Count(key) >= l.s.cfg.MaxClientErrors:
			refuse = "too many errors from your address"
		case !l.s.conns.acquire(key):
			refuse = "too many connections"
		}
		if refuse != "" {
			l.s.refused.add(refuse, key)
			go func() {
				if l.plain {
					c.SetWriteDeadline(time.Now().Add(5 * time.Second))
					c.Write([]byte("421 4.7.0 " + l.s.cfg.Hostname + " " + refuse + ", try again later\r\n"))
				}
				c.Close()
			}()
			continue
		}
		tc := &trackedConn{Conn: c, release: func() { l.s.conns.release(key) }}
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

// CloseWrite closes the sending side, for go-smtp's lingering close.
func (c *trackedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
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

// refusalLog logs refused connections without flooding: the first of a
// kind at once, then one summary per interval while they go on.
type refusalLog struct {
	log      *slog.Logger
	interval time.Duration
	mu       sync.Mutex
	kinds    map[string]*refusals
}

type refusals struct {
	logged  time.Time // when the last line was written
	count   int       // refused since
	clients map[netip.Prefix]bool
	timer   *time.Timer
}

func newRefusalLog(log *slog.Logger, interval time.Duration) *refusalLog {
	return &refusalLog{log: log, interval: interval, kinds: map[string]*refusals{}}
}

func (r *refusalLog) add(reason string, client netip.Prefix) {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := r.kinds[reason]
	if k == nil {
		k = &refusals{clients: map[netip.Prefix]bool{}}
		r.kinds[reason] = k
	}
	if time.Since(k.logged) >= r.interval && k.count == 0 {
		k.logged = time.Now()
		r.log.Warn("connection refused: "+reason, "client", client.String())
		return
	}
	k.count++
	if len(k.clients) < 1000 {
		k.clients[client] = true
	}
	if k.timer == nil {
		k.timer = time.AfterFunc(time.Until(k.logged.Add(r.interval)), func() { r.flush(reason) })
	}
}

func (r *refusalLog) flush(reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := r.kinds[reason]
	k.timer = nil
	if k.count == 0 {
		return
	}
	var some []string
	for c := range k.clients {
		if len(some) == 5 {
			break
		}
		some = append(some, c.String())
	}
	r.log.Warn("connections refused: "+reason, "refused", k.count, "clients", len(k.clients), "since", k.logged.Format(time.RFC3339), "some", some)
	k.logged, k.count = time.Now(), 0
	clear(k.clients)
}
