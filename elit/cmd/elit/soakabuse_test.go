package main

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"elit.local/elit/internal/abuse"
)

// The soak test's abuse part: the table of elit/internal/abuse, one
// connection a case, and the attacks that take several connections, each
// from loopback addresses of its own (127.0.2.x, 127.0.3.x) so that the
// limits per client they run into are theirs, not the load's.

type abuseTarget struct {
	mx, sub, subs, cert string
	key                 []byte // STATE/srs.key
}

type abuseResult struct {
	name   string
	ok     bool
	detail string
}

// runAbuse runs every case, the table's at once and the others after,
// and returns their results.
func runAbuse(tg abuseTarget, flood int) []abuseResult {
	cases := abuse.Cases(abuse.Server{Key: tg.key, Domain: "example.org", User: "din@example.org",
		List: "team@example.org", Member: "hannes@example.net"})
	results := make([]abuseResult, len(cases))
	var wg sync.WaitGroup
	for i, c := range cases {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := tableCase(tg.mx, net.IPv4(127, 0, 2, byte(1+i)), c)
			results[i] = abuseResult{name: c.Name, ok: err == nil, detail: fmt.Sprint(err)}
		}()
	}
	others := []struct {
		name string
		run  func() error
	}{
		{"STARTTLS injection", func() error { return startTLSInjection(tg, net.IPv4(127, 0, 3, 1)) }},
		{"AUTH brute force", func() error { return authBruteForce(tg, net.IPv4(127, 0, 3, 2)) }},
		{"harvesting", func() error { return harvest(tg.mx, net.IPv4(127, 0, 3, 3)) }},
		{"slowloris", func() error { return slowloris(tg.mx, net.IPv4(127, 0, 3, 4)) }},
		{fmt.Sprintf("%d connections opened and dropped", flood), func() error { return dropFlood(tg.mx, net.IPv4(127, 0, 3, 5), flood) }},
	}
	more := make([]abuseResult, len(others))
	for i, o := range others {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := o.run()
			more[i] = abuseResult{name: o.name, ok: err == nil, detail: fmt.Sprint(err)}
		}()
	}
	wg.Wait()
	return append(results, more...)
}

// abuseConn is a client connection from a given address.
type abuseConn struct {
	c net.Conn
	r *bufio.Reader
}

func abuseDial(addr string, from net.IP) (*abuseConn, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: from}, Timeout: 10 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(90 * time.Second))
	return &abuseConn{c: c, r: bufio.NewReader(c)}, nil
}

// reply reads a reply whole; "" when the connection ended.
func (a *abuseConn) reply() string {
	var b strings.Builder
	for {
		line, err := a.r.ReadString('\n')
		b.WriteString(line)
		if err != nil || len(line) < 4 || line[3] != '-' {
			return b.String()
		}
	}
}

// expect reads replies, one for each prefix.
func (a *abuseConn) expect(want ...string) error {
	for i, w := range want {
		r := a.reply()
		if !strings.HasPrefix(r, w) {
			return fmt.Errorf("reply %d: %q, want %s", i, r, w)
		}
		if !abuse.PrintableASCII(r) {
			return fmt.Errorf("reply %d is not printable ASCII: %q", i, r)
		}
	}
	return nil
}

func (a *abuseConn) send(s string) { io.WriteString(a.c, s) }

// closed reports whether the server closes the connection, with nothing
// more said in SMTP, within 15 s.
func (a *abuseConn) closed() error {
	a.c.SetReadDeadline(time.Now().Add(15 * time.Second))
	rest, err := io.ReadAll(a.r)
	if err != nil && !strings.Contains(err.Error(), "reset") {
		return fmt.Errorf("not closed: %q %v", rest, err)
	}
	if strings.Contains(string(rest), "\r\n") {
		return fmt.Errorf("more after the end: %q", rest)
	}
	return nil
}

func (a *abuseConn) tlsUp(cert string) error {
	pool := x509.NewCertPool()
	pem, _ := os.ReadFile(cert)
	pool.AppendCertsFromPEM(pem)
	tc := tls.Client(a.c, &tls.Config{ServerName: "mx.example.org", RootCAs: pool})
	if err := tc.Handshake(); err != nil {
		return fmt.Errorf("TLS: %w", err)
	}
	a.c, a.r = tc, bufio.NewReader(tc)
	return nil
}

func tableCase(addr string, from net.IP, c abuse.Case) error {
	a, err := abuseDial(addr, from)
	if err != nil {
		return err
	}
	defer a.c.Close()
	if err := a.expect("220"); err != nil {
		return err
	}
	go a.send(c.Send) // while the replies are read: the server may stop reading
	if err := a.expect(c.Want...); err != nil {
		return err
	}
	a.send(c.Then)
	if c.Closed {
		return a.closed()
	}
	return nil
}

// startTLSInjection: commands pipelined after STARTTLS in the same packet
// are discarded, not run inside TLS.
func startTLSInjection(tg abuseTarget, from net.IP) error {
	a, err := abuseDial(tg.sub, from)
	if err != nil {
		return err
	}
	defer a.c.Close()
	a.send("EHLO client.example.net\r\n")
	if err := a.expect("220", "250"); err != nil {
		return err
	}
	a.send("STARTTLS\r\nEHLO injected.example\r\nMAIL FROM:<din@example.org>\r\n")
	if err := a.expect("220"); err != nil {
		return err
	}
	if err := a.tlsUp(tg.cert); err != nil {
		return err
	}
	a.send("NOOP\r\n")
	if r := a.reply(); !strings.HasPrefix(r, "250 2.0.0") || strings.Contains(r, "injected") {
		return fmt.Errorf("first reply in TLS: %q", r)
	}
	a.send("MAIL FROM:<x@example.net>\r\n")
	return a.expect("502") // no EHLO inside TLS yet: the injected one was dropped
}

// authBruteForce: wrong passwords get 535, the third on a connection 421;
// after 10 from the address (-max-auth-failures-per-ip) even the right
// password gets 454.
func authBruteForce(tg abuseTarget, from net.IP) error {
	bad := "AUTH PLAIN " + base64.StdEncoding.EncodeToString([]byte("\x00din\x00guess")) + "\r\n"
	failures := 0
	for conn := 0; conn < 3; conn++ {
		a, err := abuseDial(tg.subs, from)
		if err != nil {
			return err
		}
		if err := a.tlsUp(tg.cert); err != nil {
			a.c.Close()
			return err
		}
		a.send("EHLO client.example.net\r\n" + bad + bad + bad)
		err = a.expect("220", "250", "535 5.7.8", "535 5.7.8", "421 4.7.0")
		a.c.Close()
		if err != nil {
			return fmt.Errorf("connection %d: %w", conn+1, err)
		}
		failures += 3
	}
	a, err := abuseDial(tg.subs, from)
	if err != nil {
		return err
	}
	defer a.c.Close()
	if err := a.tlsUp(tg.cert); err != nil {
		return err
	}
	good := "AUTH PLAIN " + base64.StdEncoding.EncodeToString([]byte("\x00din\x00"+dinPassword)) + "\r\n"
	a.send("EHLO client.example.net\r\n" + bad)
	if err := a.expect("220", "250", "535 5.7.8"); err != nil {
		return fmt.Errorf("failure %d: %w", failures+1, err)
	}
	a.send(good)
	return a.expect("454 4.7.0")
}

// harvest: RCPTs to unknown users, pipelined, are refused until the hard
// error limit (20) closes the connection, the replies past the soft limit
// (10) delayed.
func harvest(addr string, from net.IP) error {
	a, err := abuseDial(addr, from)
	if err != nil {
		return err
	}
	defer a.c.Close()
	var b strings.Builder
	b.WriteString("EHLO harvester.example\r\nMAIL FROM:<x@harvester.example>\r\n")
	for i := range 100 {
		fmt.Fprintf(&b, "RCPT TO:<user%d@example.org>\r\n", i)
	}
	a.send(b.String())
	want := []string{"220", "250", "250"}
	for range 20 {
		want = append(want, "550 5.1.1")
	}
	if err := a.expect(append(want, "421 4.7.0")...); err != nil {
		return err
	}
	return a.closed()
}

// slowloris: 55 connections from one address that send a byte every two
// seconds and never a whole line: 50 (-max-conns-per-ip) get the
// greeting, the others 421, and the server ends each of the 50 at its read
// timeout (10 s here) with 421 4.4.2.
func slowloris(addr string, from net.IP) error {
	var conns []*abuseConn
	defer func() {
		for _, a := range conns {
			a.c.Close()
		}
	}()
	refused := 0
	for range 55 {
		a, err := abuseDial(addr, from)
		if err != nil {
			return err
		}
		switch r := a.reply(); {
		case strings.HasPrefix(r, "220"):
			conns = append(conns, a)
		case strings.HasPrefix(r, "421 4.7.0"):
			refused++
			a.c.Close()
		default:
			a.c.Close()
			return fmt.Errorf("greeting %q", r)
		}
	}
	if len(conns) != 50 || refused != 5 {
		return fmt.Errorf("%d connections greeted, %d refused; want 50 and 5", len(conns), refused)
	}
	errs := make(chan error, len(conns))
	for _, a := range conns {
		go func() {
			done := make(chan struct{})
			go func() {
				for _, ch := range []byte("EHLO slow.example.net") {
					select {
					case <-done:
						return
					case <-time.After(2 * time.Second):
					}
					if _, err := a.c.Write([]byte{ch}); err != nil {
						return
					}
				}
			}()
			a.c.SetReadDeadline(time.Now().Add(40 * time.Second))
			r := a.reply()
			close(done)
			if !strings.HasPrefix(r, "421 4.4.2") {
				errs <- fmt.Errorf("a slow client got %q, want 421 4.4.2 at the read timeout", r)
				return
			}
			errs <- nil
		}()
	}
	for range conns {
		if err := <-errs; err != nil {
			return err
		}
	}
	return nil
}

// dropFlood opens n connections, 16 at a time, and drops each at once or
// after the greeting: each greeting is 220, or 421 4.7.0 while the
// server has not yet seen enough of them close; afterwards the address
// is greeted again (no slot leaked).
func dropFlood(addr string, from net.IP, n int) error {
	var mu sync.Mutex
	var firstErr error
	greeted, refused := 0, 0
	work := make(chan int)
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				a, err := abuseDial(addr, from)
				if err != nil {
					mu.Lock()
					firstErr = cmpErr(firstErr, err)
					mu.Unlock()
					continue
				}
				if i%2 == 0 {
					a.c.Close()
					continue
				}
				r := a.reply()
				a.c.Close()
				mu.Lock()
				switch {
				case strings.HasPrefix(r, "220"):
					greeted++
				case strings.HasPrefix(r, "421 4.7.0"):
					refused++
				default:
					firstErr = cmpErr(firstErr, fmt.Errorf("greeting %q", r))
				}
				mu.Unlock()
			}
		}()
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	for i := 0; ; i++ {
		a, err := abuseDial(addr, from)
		if err != nil {
			return err
		}
		r := a.reply()
		a.c.Close()
		if strings.HasPrefix(r, "220") {
			break
		}
		if i == 100 {
			return fmt.Errorf("after the flood (%d greeted, %d refused) the address still gets %q", greeted, refused, r)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil
}

func cmpErr(first, err error) error {
	if first != nil {
		return first
	}
	return err
}
