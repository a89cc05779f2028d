package smtpclient

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"elit.local/elit/reply"
)

// Envelope is one transaction's MAIL and RCPT commands.
type Envelope struct {
	From       string   // the reverse-path; "" is the null sender
	MailParams []string // MAIL parameters: "SIZE=1234", "BODY=8BITMIME"
	Rcpts      []Rcpt
}

// Rcpt is one RCPT command.
type Rcpt struct {
	To     string   // the forward-path
	Params []string // "NOTIFY=FAILURE", "ORCPT=rfc822;a@example.org"
}

// Transaction sends MAIL, the RCPTs and the data: the commands in one
// group when the server has PIPELINING (RFC 2920 §3.1), the data in
// BDAT chunks when it has CHUNKING (RFC 3030), else after DATA,
// dot-stuffed (RFC 5321 §4.5.2). data is the message, size its length
// (SIZE, BDAT), with CRLF line endings.
//
// errs has one entry per recipient: nil when the server took the message
// for it (final is then its reply to the data), or an *Error saying where
// it failed: MAIL (for all), RCPT (that one), DATA (all those accepted).
// A session that breaks before the data fails every recipient at the
// step it broke at. After a transaction that took the message for nobody,
// the session is reset (RSET) and can run another.
func (c *Client) Transaction(env Envelope, data io.Reader, size int64) (final *reply.Reply, errs []error) {
	pipelining, chunking := c.has("PIPELINING"), c.has("CHUNKING")
	errs = make([]error, len(env.Rcpts))
	all := func(err error) (*reply.Reply, []error) {
		for i := range errs {
			errs[i] = err
		}
		return nil, errs
	}
	resetFirst := c.resetFirst && pipelining // ResetWithNext
	c.resetFirst = false
	if resetFirst {
		c.send("RSET")
	}
	c.send("MAIL FROM:<%s>%s", env.From, params(env.MailParams))
	if !pipelining {
		if err := c.roundTrip(StepMAIL); err != nil {
			if !isSessionError(err) {
				c.reset()
			}
			return all(err)
		}
	}
	for i, r := range env.Rcpts {
		c.send("RCPT TO:<%s>%s", r.To, params(r.Params))
		if !pipelining {
			if errs[i] = c.roundTrip(StepRCPT); isSessionError(errs[i]) {
				return all(errs[i])
			}
		}
	}
	var mailErr error
	if pipelining {
		if !chunking {
			c.send("DATA") // the last command of the group (RFC 2920 §3.1)
		}
		if err := c.flush(StepMAIL); err != nil {
			return all(err)
		}
		if resetFirst {
			if _, _, err := c.read(StepRSET, 250); err != nil {
				c.broken = true // replies to the rest of the group may follow
				return all(err)
			}
		}
		if _, _, mailErr = c.read(StepMAIL, 250); isSessionError(mailErr) {
			return all(mailErr)
		}
		for i := range env.Rcpts {
			if _, _, errs[i] = c.read(StepRCPT, 250); isSessionError(errs[i]) {
				return all(errs[i])
			}
		}
	}
	if mailErr != nil || !accepted(errs) {
		if pipelining && !chunking {
			// DATA was sent: if it was taken anyway, send an empty
			// message for the server to refuse (RFC 2920 §3.1).
			if _, _, err := c.read(StepDATA, 354); err == nil {
				c.send(".")
				if c.flush(StepDATA) == nil {
					c.read(StepDATA, 250)
				}
			}
		}
		c.reset()
		if mailErr != nil {
			return all(mailErr)
		}
		return nil, errs
	}
	var err error
	if chunking {
		final, err = c.bdat(data, size)
	} else {
		final, err = c.data(data, !pipelining)
	}
	if err != nil {
		for i := range errs {
			if errs[i] == nil {
				errs[i] = err
			}
		}
		return nil, errs
	}
	return final, errs
}

func accepted(errs []error) bool {
	for _, err := range errs {
		if err == nil {
			return true
		}
	}
	return false
}

// params writes command parameters, each after a space.
func params(ps []string) string {
	if len(ps) == 0 {
		return ""
	}
	return " " + strings.Join(ps, " ")
}

// reset ends a transaction that took the message for nobody (RFC 5321
// §4.1.1.5).
func (c *Client) reset() {
	c.send("RSET")
	if c.flush(StepMAIL) == nil {
		c.read(StepMAIL, 250)
	}
}

// roundTrip sends what is buffered and reads the reply: 250 is success.
func (c *Client) roundTrip(step Step) error {
	if err := c.flush(step); err != nil {
		return err
	}
	_, _, err := c.read(step, 250)
	return err
}

// data sends DATA (unless it went out pipelined) and the message.
func (c *Client) data(data io.Reader, sendDATA bool) (*reply.Reply, error) {
	if sendDATA {
		c.send("DATA")
		if err := c.flush(StepDATA); err != nil {
			return nil, err
		}
	}
	if _, _, err := c.read(StepDATA, 354); err != nil {
		return nil, err
	}
	if err := c.dotStuff(data); err != nil {
		c.broken = true
		return nil, &Error{Step: StepDATA, Err: err}
	}
	c.send(".")
	if err := c.flush(StepDATA); err != nil {
		return nil, err
	}
	final, _, err := c.read(StepDATA, 250)
	return final, err
}

// readers keeps dotStuff's 64 KiB line readers for the next message: a
// new one per message was most of what a delivery allocated, and so of
// the collector's work.
var readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 64<<10) }}

// dotStuff copies CRLF-terminated data, doubling a dot that starts a
// line (RFC 5321 §4.5.2), and ends it with CRLF if it lacks one.
func (c *Client) dotStuff(data io.Reader) error {
	br := readers.Get().(*bufio.Reader)
	br.Reset(data)
	defer func() {
		br.Reset(nil)
		readers.Put(br)
	}()
	last := byte('\n')
	start := true // at the start of a line
	for {
		chunk, err := br.ReadSlice('\n')
		if len(chunk) > 0 {
			if start && chunk[0] == '.' {
				c.w.WriteByte('.')
			}
			if len(chunk) >= c.w.Available() {
				// The write goes out to the connection: it gets its
				// time (RFC 5321 §4.5.3.2, the data block), not each line.
				c.dl.extend()
			}
			if _, werr := c.w.Write(chunk); werr != nil {
				return werr
			}
			last = chunk[len(chunk)-1]
			start = last == '\n'
		}
		if err == io.EOF {
			break
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return fmt.Errorf("reading the message: %w", err)
		}
	}
	if last != '\n' {
		c.w.WriteString("\r\n")
	}
	return nil
}

// bdatChunk is the size of a BDAT chunk.
const bdatChunk = 1 << 20

// bdat sends the data in chunks, the last one marked LAST (RFC 3030 §2),
// each acknowledged before the next.
func (c *Client) bdat(data io.Reader, size int64) (*reply.Reply, error) {
	buf := make([]byte, min(bdatChunk, max(size, 0)+1)) // a small message, a small buffer
	sent := int64(0)
	for {
		n, err := io.ReadFull(data, buf)
		if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
			c.broken = true
			return nil, &Error{Step: StepDATA, Err: fmt.Errorf("reading the message: %w", err)}
		}
		sent += int64(n)
		last := err != nil || sent >= size
		if last {
			c.send("BDAT %d LAST", n)
		} else {
			c.send("BDAT %d", n)
		}
		c.w.Write(buf[:n])
		if err := c.flush(StepDATA); err != nil {
			return nil, err
		}
		final, _, err := c.read(StepDATA, 250)
		if err != nil || last {
			return final, err
		}
	}
}
