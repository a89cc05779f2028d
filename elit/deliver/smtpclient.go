package deliver

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// client is the SMTP client side of a delivery (RFC 5321), written here
// because go-smtp's client does not pipeline (RFC 2920) or send BDAT
// (RFC 3030). Replies that are not 2xx/3xx come back as *smtp.SMTPError.
type client struct {
	r   *bufio.Reader
	w   *bufio.Writer
	dl  *deadline
	ext map[string]string // EHLO keywords, upper case
}

// newClient starts the SMTP client on conn, a connection (or the TLS
// connection over one) whose deadlines dl keeps.
func newClient(conn net.Conn, dl *deadline) *client {
	return &client{r: bufio.NewReader(conn), w: bufio.NewWriter(conn), dl: dl}
}

func (c *client) deadline() { c.dl.extend() }

// deadline keeps the deadline of a session's connection: each step (a
// command, a reply, a piece of the data) gets timeout from its start
// (RFC 5321 §4.5.3.2) until ctx is done; from then on the deadline is in
// the past for good, so that the step in progress and any after it (a
// QUIT, say) fail at once and a shutdown does not wait for a stalled peer.
type deadline struct {
	ctx     context.Context
	conn    net.Conn
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

// send writes command lines (buffered; flush sends them).
func (c *client) send(format string, args ...any) {
	fmt.Fprintf(c.w, format+"\r\n", args...)
}

func (c *client) flush() error {
	c.deadline()
	return c.w.Flush()
}

// reply reads one reply. A reply outside want's class is an *SMTPError.
func (c *client) reply(want int) (string, error) {
	c.deadline()
	var lines []string
	code := 0
	for {
		line, err := c.r.ReadString('\n')
		if err != nil {
			return "", err
		}
		line = strings.TrimRight(line, "\r\n")
		if len(line) < 3 {
			return "", fmt.Errorf("malformed reply %q", line)
		}
		n, err := strconv.Atoi(line[:3])
		if err != nil || n < 200 || n > 599 {
			return "", fmt.Errorf("malformed reply %q", line)
		}
		if code != 0 && n != code {
			return "", fmt.Errorf("inconsistent reply codes %d and %d", code, n)
		}
		code = n
		if len(line) > 4 {
			lines = append(lines, line[4:])
		} else {
			lines = append(lines, "")
		}
		if len(lines) > 200 {
			return "", errors.New("reply too long")
		}
		if len(line) == 3 || line[3] == ' ' {
			break
		}
	}
	text := strings.Join(lines, "\n")
	if code/100 != want/100 {
		return text, replyError(code, text)
	}
	return text, nil
}

// replyError makes an *smtp.SMTPError, with the enhanced code (RFC 3463)
// when the reply starts with one.
func replyError(code int, text string) *smtp.SMTPError {
	e := &smtp.SMTPError{Code: code, EnhancedCode: smtp.NoEnhancedCode, Message: text}
	if f := strings.Fields(text); len(f) > 0 {
		parts := strings.Split(f[0], ".")
		if len(parts) == 3 {
			var ec smtp.EnhancedCode
			ok := true
			for i, p := range parts {
				v, err := strconv.Atoi(p)
				ok = ok && err == nil
				ec[i] = v
			}
			if ok && ec[0] == code/100 {
				e.EnhancedCode = ec
				e.Message = strings.TrimSpace(strings.TrimPrefix(text, f[0]))
			}
		}
	}
	return e
}

func (c *client) greeting() error {
	_, err := c.reply(220)
	return err
}

// ehlo says EHLO, or HELO to a server that does not know EHLO (RFC 5321
// §3.2), and notes the extensions.
func (c *client) ehlo(name string) error {
	c.send("EHLO %s", name)
	if err := c.flush(); err != nil {
		return err
	}
	c.ext = map[string]string{}
	text, err := c.reply(250)
	var se *smtp.SMTPError
	if errors.As(err, &se) && se.Code >= 500 {
		c.send("HELO %s", name)
		if err := c.flush(); err != nil {
			return err
		}
		_, err = c.reply(250)
		return err
	}
	if err != nil {
		return err
	}
	for _, l := range strings.Split(text, "\n")[1:] {
		k, v, _ := strings.Cut(l, " ")
		c.ext[strings.ToUpper(k)] = v
	}
	return nil
}

func (c *client) has(ext string) bool { _, ok := c.ext[ext]; return ok }

// auth runs a SASL exchange (RFC 4954).
func (c *client) auth(sc sasl.Client) error {
	mech, ir, err := sc.Start()
	if err != nil {
		return err
	}
	if ir != nil {
		enc := base64.StdEncoding.EncodeToString(ir)
		if enc == "" {
			enc = "="
		}
		c.send("AUTH %s %s", mech, enc)
	} else {
		c.send("AUTH %s", mech)
	}
	for range 10 {
		if err := c.flush(); err != nil {
			return err
		}
		text, err := c.reply(235)
		if err == nil {
			return nil
		}
		var se *smtp.SMTPError
		if !errors.As(err, &se) || se.Code != 334 {
			return err
		}
		ch, err := base64.StdEncoding.DecodeString(strings.TrimSpace(text))
		if err != nil {
			c.send("*")
			c.flush()
			c.reply(501)
			return fmt.Errorf("AUTH %s: bad challenge", mech)
		}
		resp, err := sc.Next(ch)
		if err != nil {
			c.send("*")
			c.flush()
			c.reply(501)
			return err
		}
		c.send("%s", base64.StdEncoding.EncodeToString(resp))
	}
	return fmt.Errorf("AUTH %s: too many challenges", mech)
}

// envelope is one transaction's MAIL and RCPT parameters.
type envelope struct {
	from     string
	mailArgs string   // " SIZE=... BODY=..." etc.
	rcpts    []string // addresses
	rcptArgs []string // per recipient parameters
}

// transaction sends MAIL, the RCPTs and the data, pipelined when the
// server has PIPELINING (RFC 2920) and with BDAT when it has CHUNKING
// (RFC 3030). rcptErrs has one entry per recipient; dataErr applies to
// the accepted ones.
func (c *client) transaction(env envelope, data io.Reader, size int64) (mailErr error, rcptErrs []error, reply string, dataErr error) {
	pipelining := c.has("PIPELINING")
	chunking := c.has("CHUNKING")
	rcptErrs = make([]error, len(env.rcpts))
	c.send("MAIL FROM:<%s>%s", env.from, env.mailArgs)
	if !pipelining {
		if err := c.flush(); err != nil {
			return err, rcptErrs, "", nil
		}
		if _, err := c.reply(250); err != nil {
			return err, rcptErrs, "", nil
		}
	}
	for i, r := range env.rcpts {
		c.send("RCPT TO:<%s>%s", r, env.rcptArgs[i])
		if !pipelining {
			if err := c.flush(); err != nil {
				return err, rcptErrs, "", nil
			}
			_, rcptErrs[i] = c.reply(250)
			if isConnError(rcptErrs[i]) {
				return rcptErrs[i], rcptErrs, "", nil
			}
		}
	}
	if pipelining && !chunking {
		c.send("DATA") // the last command of the group (RFC 2920 §3.1)
	}
	if pipelining {
		if err := c.flush(); err != nil {
			return err, rcptErrs, "", nil
		}
		if _, err := c.reply(250); err != nil {
			mailErr = err
		}
		for i := range env.rcpts {
			_, rcptErrs[i] = c.reply(250)
			if isConnError(rcptErrs[i]) {
				return rcptErrs[i], rcptErrs, "", nil
			}
		}
	}
	accepted := 0
	for i := range rcptErrs {
		if rcptErrs[i] == nil {
			accepted++
		}
	}
	if mailErr != nil || accepted == 0 {
		if pipelining && !chunking {
			// DATA was sent: if it was taken anyway, send an empty message
			// and let the server refuse it (RFC 2920 §3.1).
			if _, err := c.reply(354); err == nil {
				c.send(".")
				c.flush()
				c.reply(250)
			}
		}
		c.send("RSET")
		c.flush()
		c.reply(250)
		return mailErr, rcptErrs, "", nil
	}
	if chunking {
		reply, dataErr = c.bdat(data, size)
		return nil, rcptErrs, reply, dataErr
	}
	if !pipelining {
		c.send("DATA")
		if err := c.flush(); err != nil {
			return nil, rcptErrs, "", err
		}
	}
	if _, err := c.reply(354); err != nil {
		return nil, rcptErrs, "", err
	}
	if err := c.dotStuff(data); err != nil {
		return nil, rcptErrs, "", err
	}
	c.send(".")
	if err := c.flush(); err != nil {
		return nil, rcptErrs, "", err
	}
	reply, dataErr = c.reply(250)
	return nil, rcptErrs, reply, dataErr
}

// dotStuff copies CRLF-terminated data, doubling a leading dot on each
// line (RFC 5321 §4.5.2), and ends it with a line break if it lacks one.
func (c *client) dotStuff(data io.Reader) error {
	br := bufio.NewReaderSize(data, 64<<10)
	last := byte('\n')
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			if line[0] == '.' {
				c.w.WriteByte('.')
			}
			c.w.Write(line)
			last = line[len(line)-1]
		}
		if err == io.EOF {
			break
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return err
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			// A long line: copy the rest of it without the dot check.
			for errors.Is(err, bufio.ErrBufferFull) {
				line, err = br.ReadSlice('\n')
				c.w.Write(line)
				if len(line) > 0 {
					last = line[len(line)-1]
				}
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				return err
			}
		}
		c.deadline()
	}
	if last != '\n' {
		c.w.WriteString("\r\n")
	}
	return nil
}

// bdat sends the data in chunks of up to 1 MiB, the last one marked LAST.
func (c *client) bdat(data io.Reader, size int64) (string, error) {
	const chunk = 1 << 20
	buf := make([]byte, chunk)
	sent := int64(0)
	for {
		n, err := io.ReadFull(data, buf)
		if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
			return "", err
		}
		sent += int64(n)
		last := err != nil || sent >= size
		if last {
			c.send("BDAT %d LAST", n)
		} else {
			c.send("BDAT %d", n)
		}
		c.w.Write(buf[:n])
		if err := c.flush(); err != nil {
			return "", err
		}
		reply, rerr := c.reply(250)
		if rerr != nil || last {
			return reply, rerr
		}
	}
}

func (c *client) quit() {
	c.send("QUIT")
	if c.flush() == nil {
		c.reply(221)
	}
}
