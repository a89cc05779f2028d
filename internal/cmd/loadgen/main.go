// Command loadgen is make bench's SMTP client: it sends N messages of SIZE
// bytes over SESSIONS concurrent sessions, PER messages over each
// connection before QUIT, and measures each message's latency from the
// end of its DATA (the final ".") to the server's reply — the time the
// server takes to put the message on stable storage, which smtp-source
// does not report.
//
//	loadgen -addr 127.0.0.1:2525 -n 2000 -sessions 10 -per 1 -size 1024 \
//		-from bench@example.net -to din@example.org
//
// It prints one line: accepted=A failed=F seconds=S rate=R p50_ms=X
// p99_ms=Y (rate: accepted per second, from the first connection to the
// last reply). Replies other than 2xx count as failed and close the
// connection; the first few are printed on stderr. Every read and write
// has a deadline, and the number of messages bounds the run.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:25", "server `address`")
	n := flag.Int("n", 1000, "messages in all")
	sessions := flag.Int("sessions", 10, "concurrent sessions")
	per := flag.Int("per", 1, "messages per connection")
	size := flag.Int("size", 1024, "message size in `bytes`")
	from := flag.String("from", "bench@example.net", "envelope sender")
	to := flag.String("to", "din@example.org", "envelope recipient")
	helo := flag.String("helo", "client.example.net", "EHLO name")
	timeout := flag.Duration("timeout", time.Minute, "deadline of each read and write")
	flag.Parse()
	if *n < 1 || *sessions < 1 || *per < 1 || *size < 0 {
		fmt.Fprintln(os.Stderr, "loadgen: -n, -sessions and -per must be positive")
		os.Exit(2)
	}

	g := &gen{addr: *addr, from: *from, to: *to, helo: *helo, timeout: *timeout, per: *per, n: int64(*n), size: *size}
	start := time.Now()
	var wg sync.WaitGroup
	lat := make([][]time.Duration, *sessions)
	for i := range *sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lat[i] = g.worker()
		}()
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	all := slices.Concat(lat...)
	slices.Sort(all)
	fmt.Printf("accepted=%d failed=%d seconds=%.3f rate=%.1f p50_ms=%.3f p99_ms=%.3f\n",
		len(all), g.failed.Load(), secs, float64(len(all))/secs, ms(pct(all, 50)), ms(pct(all, 99)))
	if g.failed.Load() > 0 {
		os.Exit(1)
	}
}

type gen struct {
	addr, from, to, helo string
	timeout              time.Duration
	per, size            int
	n                    int64
	next                 atomic.Int64 // messages handed out
	failed               atomic.Int64
	errors               atomic.Int64 // printed
}

// take hands out the next message number, or -1 when all are out.
func (g *gen) take() int64 {
	if i := g.next.Add(1); i <= g.n {
		return i
	}
	return -1
}

func (g *gen) fail(err error) {
	g.failed.Add(1)
	if g.errors.Add(1) <= 5 {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
	}
}

// worker sends messages until all are out and returns their latencies.
func (g *gen) worker() []time.Duration {
	var lat []time.Duration
	for {
		i := g.take()
		if i < 0 {
			return lat
		}
		c, err := g.dial()
		if err != nil {
			g.fail(err)
			continue
		}
		for k := 0; ; k++ {
			d, err := c.send(g, i)
			if err != nil {
				g.fail(err)
				break
			}
			lat = append(lat, d)
			if k+1 == g.per {
				c.cmd("QUIT")
				break
			}
			if i = g.take(); i < 0 {
				c.cmd("QUIT")
				break
			}
		}
		c.conn.Close()
	}
}

type conn struct {
	conn    net.Conn
	r       *bufio.Reader
	w       *bufio.Writer
	timeout time.Duration
}

func (g *gen) dial() (*conn, error) {
	nc, err := net.DialTimeout("tcp", g.addr, g.timeout)
	if err != nil {
		return nil, fmt.Errorf("dial: %w", err)
	}
	c := &conn{conn: nc, r: bufio.NewReader(nc), w: bufio.NewWriterSize(nc, 64<<10), timeout: g.timeout}
	if _, err := c.reply(); err != nil {
		nc.Close()
		return nil, fmt.Errorf("greeting: %w", err)
	}
	if _, err := c.cmd("EHLO " + g.helo); err != nil {
		nc.Close()
		return nil, err
	}
	return c, nil
}

// send sends message i and returns the time from the end of its data
// to the server's reply.
func (c *conn) send(g *gen, i int64) (time.Duration, error) {
	for _, cmd := range []string{"MAIL FROM:<" + g.from + ">", "RCPT TO:<" + g.to + ">", "DATA"} {
		if _, err := c.cmd(cmd); err != nil {
			return 0, err
		}
	}
	c.conn.SetWriteDeadline(time.Now().Add(c.timeout))
	writeMessage(c.w, g, i)
	if err := c.w.Flush(); err != nil {
		return 0, fmt.Errorf("data: %w", err)
	}
	t := time.Now()
	if _, err := c.reply(); err != nil {
		return 0, fmt.Errorf("end of data: %w", err)
	}
	return time.Since(t), nil
}

// writeMessage writes message i, dot-terminated, about g.size bytes.
func writeMessage(w *bufio.Writer, g *gen, i int64) {
	h := fmt.Sprintf("From: <%s>\r\nTo: <%s>\r\nSubject: load %d\r\nMessage-ID: <load.%d.%d@example.net>\r\nDate: %s\r\n\r\n",
		g.from, g.to, i, os.Getpid(), i, time.Now().Format(time.RFC1123Z))
	w.WriteString(h)
	line := strings.Repeat("x", 76) + "\r\n"
	for left := g.size - len(h); left > 0; left -= len(line) {
		w.WriteString(line)
	}
	w.WriteString(".\r\n")
}

func (c *conn) cmd(line string) (string, error) {
	c.conn.SetWriteDeadline(time.Now().Add(c.timeout))
	c.w.WriteString(line + "\r\n")
	if err := c.w.Flush(); err != nil {
		return "", fmt.Errorf("%s: %w", verb(line), err)
	}
	r, err := c.reply()
	if err != nil {
		return r, fmt.Errorf("%s: %w", verb(line), err)
	}
	return r, nil
}

// reply reads a (multi-line) reply and fails unless it is 2xx or 3xx.
func (c *conn) reply() (string, error) {
	c.conn.SetReadDeadline(time.Now().Add(c.timeout))
	var all []string
	for {
		l, err := c.r.ReadString('\n')
		if err != nil {
			return "", err
		}
		l = strings.TrimRight(l, "\r\n")
		all = append(all, l)
		if len(l) < 4 || l[3] != '-' {
			break
		}
	}
	r := strings.Join(all, " / ")
	if r == "" || (r[0] != '2' && r[0] != '3') {
		return r, fmt.Errorf("reply %q", r)
	}
	return r, nil
}

func verb(line string) string { v, _, _ := strings.Cut(line, " "); return v }

func pct(s []time.Duration, p int) time.Duration {
	if len(s) == 0 {
		return 0
	}
	return s[min(len(s)-1, len(s)*p/100)]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
