package deliver

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"elit.local/elit/metrics"
	"elit.local/elit/smtpclient"
)

// Connection reuse, as Postfix's connection cache: after a transaction
// the session to a host stays open for a short idle time, and the next
// message to the same host goes over it after an RSET (RFC 5321
// §4.1.1.5) instead of a new connection, greeting, EHLO and TLS
// handshake. RFC 5321 §4.5.3.2 lets a client keep a session between
// transactions; §4.1.1.5 has RSET clear it for the next.
//
// A session is kept only for what it was opened for: the same transport,
// destination domain, host name (the name TLS verified) and address, and
// the same TLS plan and requirement (policy, TLSA records or MTA-STS
// policy lines, requirement mode and names), so that a message only goes
// over a session whose TLS its own plan asks for; a REQUIRETLS message
// only over one with verified TLS whose server offered REQUIRETLS (RFC
// 8689 §4.2.1). A session that fails before the server answers MAIL
// cannot have taken the message: the message goes on a new connection,
// and that is not counted as an attempt.

// Defaults of connection reuse.
const (
	defaultReuseIdle     = 5 * time.Second // how long an idle session is kept (Config.ReuseIdle)
	defaultReuseMessages = 100             // transactions per session (Config.ReuseMessages)
	maxSessionAge        = 5 * time.Minute // then a session is not reused (Postfix: smtp_connection_reuse_time_limit)
	maxIdleSessions      = 100             // idle sessions in all
)

var (
	sessionsOpened = metrics.Default.NewCounter("elit_delivery_sessions_total", "SMTP sessions opened for delivery.")
	sessionsReused = metrics.Default.NewCounter("elit_delivery_session_reuses_total", "Transactions run on a session kept from an earlier one (connection reuse).")
)

// sessionKey is what a session is for: only a message with the same key
// may use it.
type sessionKey struct {
	t      *Transport
	domain string // the destination domain; "" through a relay
	host   string // the host name: TLS verified it, TLSA records are its
	addr   string // the address dialled, ip:port
	plan   string // planKey of the TLS plan and the requirement met
}

// planKey identifies a TLS plan and one of its requirements: two plans
// with the same key ask for the same TLS of the same host. A DANE
// requirement's check is made from its TLSA records, which are the
// plan's PolicyStrings.
func planKey(plan TLSPlan, req TLSRequirement) string {
	return fmt.Sprintf("%q %q %q %q %q|%s %t %q %t", plan.Policy, plan.PolicyDomain, plan.VerifiedBy,
		strings.Join(plan.PolicyStrings, "\n"), strings.Join(plan.MXHosts, " "),
		req.Mode, req.Required, req.ServerNames, req.Verify != nil)
}

// destKey is a destination as the schedule limits its connections.
type destKey struct {
	t      *Transport
	domain string
}

// openSession is a session that ran or will run transactions.
type openSession struct {
	c        *smtpclient.Client
	key      sessionKey
	achieved TLSMode
	opened   time.Time
	sent     int         // transactions run (or messages refused before one)
	timer    *time.Timer // closes it when idle too long
}

// sessionPool holds the idle sessions.
type sessionPool struct {
	idle      time.Duration // <= 0: no reuse
	messages  int
	perDest   int
	total     int
	now       func() time.Time
	mu        sync.Mutex
	byKey     map[sessionKey][]*openSession
	perDestN  map[destKey]int
	n         int
	closed    bool
	closeWait sync.WaitGroup
}

func newSessionPool(idle time.Duration, messages, perDest int) *sessionPool {
	return &sessionPool{idle: idle, messages: messages, perDest: perDest, total: maxIdleSessions, now: time.Now,
		byKey: map[sessionKey][]*openSession{}, perDestN: map[destKey]int{}}
}

// get takes an idle session for one of the requirements of plan, in the
// plan's order, that meets what dest needs; nil if there is none.
func (p *sessionPool) get(key sessionKey, plan TLSPlan, dest TLSDestination) *openSession {
	if p.idle <= 0 {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, req := range plan.Requirements {
		key.plan = planKey(plan, req)
		list := p.byKey[key]
		for i := len(list) - 1; i >= 0; i-- { // the most recent first
			s := list[i]
			if !meets(s, req, dest) {
				continue
			}
			p.byKey[key] = slices.Delete(list, i, i+1)
			if len(p.byKey[key]) == 0 {
				delete(p.byKey, key)
			}
			p.forget(s)
			s.timer.Stop() // if it fired, expire finds s gone
			return s
		}
	}
	return nil
}

// meets reports whether session s gives what req and dest need. The key
// already says that s was opened for req; this is the check of what it
// got.
func meets(s *openSession, req TLSRequirement, dest TLSDestination) bool {
	if req.Required && rank(s.achieved) < rank(req.Mode) {
		return false
	}
	if dest.RequireTLS {
		_, tlsOn := s.c.TLS()
		if _, ok := s.c.Extension("REQUIRETLS"); !ok || !tlsOn || s.achieved != TLSVerified {
			return false
		}
	}
	return s.c.Usable()
}

// rank orders TLS modes, plaintext lowest.
func rank(m TLSMode) int {
	switch m {
	case TLSVerified:
		return 2
	case TLSUnverified:
		return 1
	}
	return 0
}

func (p *sessionPool) forget(s *openSession) {
	p.n--
	dk := destKey{s.key.t, s.key.domain}
	if p.perDestN[dk]--; p.perDestN[dk] <= 0 {
		delete(p.perDestN, dk)
	}
}

// put keeps s for the next message, or reports false when it is not to be
// kept (the caller ends it): reuse is off, s ran its number of
// transactions or is too old, it broke, or enough sessions are idle.
func (p *sessionPool) put(s *openSession) bool {
	if p.idle <= 0 || s.sent >= p.messages || p.now().Sub(s.opened) >= maxSessionAge || !s.c.Usable() {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	dk := destKey{s.key.t, s.key.domain}
	if p.closed || p.n >= p.total || p.perDestN[dk] >= p.perDest {
		return false
	}
	p.byKey[s.key] = append(p.byKey[s.key], s)
	p.n++
	p.perDestN[dk]++
	s.timer = time.AfterFunc(p.idle, func() { p.expire(s) })
	return true
}

// expire ends s if it is still idle.
func (p *sessionPool) expire(s *openSession) {
	p.mu.Lock()
	list := p.byKey[s.key]
	i := slices.Index(list, s)
	if i < 0 {
		p.mu.Unlock()
		return
	}
	p.byKey[s.key] = slices.Delete(list, i, i+1)
	if len(p.byKey[s.key]) == 0 {
		delete(p.byKey, s.key)
	}
	p.forget(s)
	p.closeWait.Add(1)
	p.mu.Unlock()
	defer p.closeWait.Done()
	s.c.Quit()
}

// close ends the idle sessions and keeps no more; it returns when they
// are closed.
func (p *sessionPool) close() {
	p.mu.Lock()
	p.closed = true
	var all []*openSession
	for k, list := range p.byKey {
		for _, s := range list {
			s.timer.Stop()
			all = append(all, s)
		}
		delete(p.byKey, k)
	}
	clear(p.perDestN)
	p.n = 0
	p.mu.Unlock()
	for _, s := range all {
		s.c.Quit()
	}
	p.closeWait.Wait()
}

// idleCount is the number of idle sessions (tests).
func (p *sessionPool) idleCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n
}
