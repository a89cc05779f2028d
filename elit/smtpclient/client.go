// Package smtpclient is the client side of SMTP (RFC 5321) that Elit's
// delivery speaks to other mail servers: the greeting and EHLO (HELO for
// a server without it, §3.2), STARTTLS (RFC 3207) or implicit TLS (RFC
// 8314), AUTH (RFC 4954) with the SASL clients of this package, and
// transactions pipelined (RFC 2920) and sent with BDAT (RFC 3030) when the
// server can, their data dot-stuffed otherwise (§4.5.2). It is written
// here because go-smtp's client does neither PIPELINING nor CHUNKING.
//
// A Client is one session on a connection the caller opened:
//
//	c := smtpclient.New(ctx, conn, 5*time.Minute)
//	defer c.Close()
//	err := c.Hello("mx.example.org")       // the greeting, EHLO
//	err = c.StartTLS(tlsConfig)            // when c.Extension("STARTTLS")
//	_, err = c.Login(user, password, "")   // a submission relay
//	final, errs := c.Transaction(env, data, size)
//	c.Quit()
//
// Every step (a command, a reply, a piece of the data) gets the timeout
// from its start (§4.5.3.2), and none once the context given to New is
// done, so that a cancelled delivery ends at once even against a server
// that stalls. A step that fails returns an *Error naming it, with the
// server's reply (a *reply.Reply, enhanced status code included, RFC
// 3463) when it gave one.
package smtpclient

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-sasl"

	"elit.local/elit/reply"
)

// Step is a step of a session, as results and DSNs name it.
type Step string

// The steps of a session, in order.
const (
	StepConnect  Step = "connect" // the connection, and its TLS handshake when TLS is implicit
	StepGreeting Step = "greeting"
	StepEHLO     Step = "EHLO"
	StepSTARTTLS Step = "STARTTLS" // the command and the handshake after it
	StepAUTH     Step = "AUTH"
	StepMAIL     Step = "MAIL"
	StepRCPT     Step = "RCPT"
	StepDATA     Step = "DATA" // DATA and the data, or BDAT
	StepRSET     Step = "RSET" // the reset before a transaction on a session that ran one (Reset)
)

// Error is a failed step: the server refused it (Reply), or the session
// broke (Err: the connection, TLS, a malformed reply). After an Error
// without Reply the session is over.
type Error struct {
	Step  Step
	Reply *reply.Reply // the server's reply, when it gave one
	Err   error        // what went wrong otherwise
}

func (e *Error) Error() string {
	if e.Reply != nil {
		return fmt.Sprintf("%s: %v", e.Step, e.Reply)
	}
	return fmt.Sprintf("%s: %v", e.Step, e.Err)
}

// Unwrap returns the reply, or the error when there is none.
func (e *Error) Unwrap() error {
	if e.Reply != nil {
		return e.Reply
	}
	return e.Err
}

// Permanent reports a 5xx reply (RFC 5321 §4.2.1): trying again will not
// help. Anything else is temporary.
func (e *Error) Permanent() bool { return e.Reply != nil && e.Reply.Permanent() }

// Client is an SMTP session. Its methods are called from one goroutine.
type Client struct {
	conn    net.Conn // the connection, TLS once it is
	r       *bufio.Reader
	w       *bufio.Writer
	dl      *deadline
	ctx     context.Context
	name    string            // ours, in EHLO
	greeted bool              // the greeting was read
	ext     map[string]string // the server's EHLO keywords (upper case) and their parameters
	broken  bool              // a step broke the session, the server closed it (421), or Close did
	// resetFirst: the next Transaction starts its group with RSET
	// (ResetWithNext).
	resetFirst bool
}

// New starts a session on conn: each step gets timeout (5 minutes if
// zero) until ctx is done, then none. Close ends it.
func New(ctx context.Context, conn net.Conn, timeout time.Duration) *Client {
	if timeout <= 0 {
		timeout = 5 * time.Minute
	}
	c := &Client{ctx: ctx, dl: watchDeadline(ctx, conn, timeout)}
	c.use(conn)
	return c
}

// writeBuffer is the size of the buffer commands and data go out from:
// a 100 KiB message in a few writes, and no more than a TLS record.
const writeBuffer = 16 << 10

func (c *Client) use(conn net.Conn) {
	c.conn, c.r, c.w = conn, bufio.NewReader(conn), bufio.NewWriterSize(conn, writeBuffer)
}

// Close closes the connection, without QUIT.
func (c *Client) Close() error {
	c.broken = true
	c.dl.stop()
	return c.conn.Close()
}

// Usable reports whether the session can run another transaction: no
// step broke it (an *Error without a reply), the server did not close
// it (421, RFC 5321 §3.8), and it was not closed. A server may still have
// closed it meanwhile; Reset finds out.
func (c *Client) Usable() bool { return !c.broken }

// Reset says RSET and waits for its 250 (RFC 5321 §4.1.1.5): the state
// of a session that ran a transaction is cleared for the next one, and
// the round trip shows that the server is still there before a message
// is entrusted to the session. An error (StepRSET) leaves the session
// unusable.
func (c *Client) Reset() error {
	c.send("RSET")
	err := c.flush(StepRSET)
	if err == nil {
		_, _, err = c.read(StepRSET, 250)
	}
	if err != nil {
		c.broken = true
	}
	return err
}

// ResetWithNext is Reset sent in the next Transaction's command group
// when the server has PIPELINING (RFC 2920 §3.1: RSET may appear
// anywhere in a group): a kept session then costs no round trip of its
// own before a message. The RSET's failure is the Transaction's, at
// StepRSET, for every recipient, the session unusable; nothing was
// delivered then (the data goes only after the 354). Without PIPELINING
// it is Reset.
func (c *Client) ResetWithNext() error {
	if !c.has("PIPELINING") {
		return c.Reset()
	}
	c.resetFirst = true
	return nil
}

// Quit says QUIT (RFC 5321 §4.1.1.10), reads the reply if it comes in
// time, and closes the connection.
func (c *Client) Quit() {
	c.send("QUIT")
	if c.flush("QUIT") == nil {
		c.read("QUIT", 221)
	}
	c.Close()
}

// Handshake starts TLS at once (implicit TLS, RFC 8314 §3), before Hello.
func (c *Client) Handshake(cfg *tls.Config) error {
	return c.handshake(StepConnect, cfg)
}

func (c *Client) handshake(step Step, cfg *tls.Config) error {
	tc := tls.Client(c.conn, cfg)
	c.dl.extend()
	if err := tc.HandshakeContext(c.ctx); err != nil {
		c.broken = true
		return &Error{Step: step, Err: fmt.Errorf("TLS: %w", err)}
	}
	c.use(tc)
	return nil
}

// TLS returns the state of the session's TLS, if it has any.
func (c *Client) TLS() (tls.ConnectionState, bool) {
	if tc, ok := c.conn.(*tls.Conn); ok {
		return tc.ConnectionState(), true
	}
	return tls.ConnectionState{}, false
}

// Hello reads the server's greeting the first time it is called, then
// says EHLO name, or HELO to a server that refuses EHLO with a 5xx (RFC
// 5321 §3.2), and notes the extensions the server has.
func (c *Client) Hello(name string) error {
	c.name = name
	if !c.greeted {
		if _, _, err := c.read(StepGreeting, 220); err != nil {
			return err
		}
		c.greeted = true
	}
	c.ext = map[string]string{}
	c.send("EHLO %s", name)
	if err := c.flush(StepEHLO); err != nil {
		return err
	}
	_, lines, err := c.read(StepEHLO, 250)
	if e := (*Error)(nil); errors.As(err, &e) && e.Permanent() {
		c.send("HELO %s", name)
		if err := c.flush(StepEHLO); err != nil {
			return err
		}
		_, _, err = c.read(StepEHLO, 250)
		return err
	}
	if err != nil {
		return err
	}
	for _, l := range lines[1:] {
		k, v, _ := strings.Cut(l, " ")
		c.ext[strings.ToUpper(k)] = v
	}
	return nil
}

// Extension reports whether the server named the EHLO keyword ext (in
// upper case) and with what parameters: Extension("SIZE") may be
// "10240000", true.
func (c *Client) Extension(ext string) (string, bool) {
	v, ok := c.ext[ext]
	return v, ok
}

func (c *Client) has(ext string) bool { _, ok := c.ext[ext]; return ok }

// StartTLS says STARTTLS, makes the TLS handshake with cfg, and says
// EHLO again, having forgotten what the server said before (RFC 3207
// §4.2). A refusal or a failed handshake is an *Error at StepSTARTTLS;
// after a failed handshake the session is over.
func (c *Client) StartTLS(cfg *tls.Config) error {
	c.send("STARTTLS")
	if err := c.flush(StepSTARTTLS); err != nil {
		return err
	}
	if _, _, err := c.read(StepSTARTTLS, 220); err != nil {
		return err
	}
	if err := c.handshake(StepSTARTTLS, cfg); err != nil {
		return err
	}
	return c.Hello(c.name)
}

// Auth runs a SASL exchange (RFC 4954 §4), with the initial response on
// the AUTH line when the mechanism has one.
func (c *Client) Auth(sc sasl.Client) error {
	mech, ir, err := sc.Start()
	if err != nil {
		return &Error{Step: StepAUTH, Err: err}
	}
	if ir != nil {
		enc := base64.StdEncoding.EncodeToString(ir)
		if enc == "" {
			enc = "=" // an empty initial response (§4)
		}
		c.send("AUTH %s %s", mech, enc)
	} else {
		c.send("AUTH %s", mech)
	}
	for range 10 {
		if err := c.flush(StepAUTH); err != nil {
			return err
		}
		rp, _, err := c.read(StepAUTH, 235)
		if err == nil {
			return nil
		}
		if rp == nil || rp.Code != 334 {
			return err
		}
		ch, err := base64.StdEncoding.DecodeString(rp.Text)
		if err == nil {
			var resp []byte
			if resp, err = sc.Next(ch); err == nil {
				c.send("%s", base64.StdEncoding.EncodeToString(resp))
				continue
			}
		} else {
			err = fmt.Errorf("AUTH %s: the challenge is not base64", mech)
		}
		c.send("*") // cancel the exchange (§4)
		if c.flush(StepAUTH) == nil {
			c.read(StepAUTH, 501)
		}
		return &Error{Step: StepAUTH, Err: err}
	}
	return &Error{Step: StepAUTH, Err: fmt.Errorf("AUTH %s: too many challenges", mech)}
}

// Login authenticates as user with mechanism, or with the strongest of
// Mechanisms that the server offers when mechanism is "". It returns the
// mechanism used.
func (c *Client) Login(user, password, mechanism string) (string, error) {
	offered := strings.Fields(strings.ToUpper(c.ext["AUTH"]))
	for _, m := range Mechanisms {
		if (mechanism == "" || strings.EqualFold(mechanism, m)) && slices.Contains(offered, m) {
			sc, err := NewSASL(m, user, password)
			if err != nil {
				return "", &Error{Step: StepAUTH, Err: err}
			}
			return m, c.Auth(sc)
		}
	}
	return "", &Error{Step: StepAUTH, Err: fmt.Errorf("the server offers AUTH %q, none we can use", c.ext["AUTH"])}
}

// send buffers a command line; flush sends what is buffered.
func (c *Client) send(format string, args ...any) {
	fmt.Fprintf(c.w, format+"\r\n", args...)
}

func (c *Client) flush(step Step) error {
	c.dl.extend()
	if err := c.w.Flush(); err != nil {
		c.broken = true
		return &Error{Step: step, Err: err}
	}
	return nil
}

// read reads one reply. A reply outside want's class is an *Error with
// the reply, returned as well.
func (c *Client) read(step Step, want int) (*reply.Reply, []string, error) {
	c.dl.extend()
	rp, lines, err := readReply(c.r)
	if err != nil {
		c.broken = true
		return nil, nil, &Error{Step: step, Err: err}
	}
	if rp.Code == 421 {
		c.broken = true // the server is closing the session (RFC 5321 §3.8)
	}
	if rp.Code/100 != want/100 {
		return rp, lines, &Error{Step: step, Reply: rp}
	}
	return rp, lines, nil
}

// deadline keeps the deadline of a session's connection: each step gets
// timeout from its start (RFC 5321 §4.5.3.2) until ctx is done; from then
// on the deadline is in the past for good, so that the step in progress
// and any after it (a QUIT, say) fail at once and a shutdown does not
// wait for a stalled peer.
type deadline struct {
	ctx     context.Context
	conn    net.Conn // the connection under any TLS: its deadline is TLS's
	timeout time.Duration
	mu      sync.Mutex // one extend at a time: ctx's end is never undone
	stop    func() bool
}

// watchDeadline ties conn's deadlines to ctx. Call stop when done.
func watchDeadline(ctx context.Context, conn net.Conn, timeout time.Duration) *deadline {
	dl := &deadline{ctx: ctx, conn: conn, timeout: timeout}
	dl.stop = context.AfterFunc(ctx, dl.extend)
	return dl
}

// extend gives the next step its time, or none once ctx is done.
func (dl *deadline) extend() {
	dl.mu.Lock()
	defer dl.mu.Unlock()
	if dl.ctx.Err() != nil {
		dl.conn.SetDeadline(time.Unix(1, 0))
		return
	}
	dl.conn.SetDeadline(time.Now().Add(dl.timeout))
}

// isSessionError reports an error that is no reply: the session is over.
func isSessionError(err error) bool {
	var e *Error
	return err != nil && (!errors.As(err, &e) || e.Reply == nil)
}
