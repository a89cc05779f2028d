package receive

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"elit.local/elit/decide"
	"elit.local/elit/mailaddr"
	"elit.local/elit/metrics"
	"elit.local/elit/queue"
	"elit.local/elit/reply"
)

func smtpErr(code int, ec smtp.EnhancedCode, format string, args ...any) *smtp.SMTPError {
	return &smtp.SMTPError{Code: code, EnhancedCode: ec, Message: fmt.Sprintf(format, args...)}
}

var (
	receivedTotal     = metrics.Default.NewCounterVec("elit_received_messages_total", "Messages queued, by listener.", "listener")
	authFailuresTotal = metrics.Default.NewCounter("elit_auth_failures_total", "Failed SASL authentications.")
)

var (
	errAuthRequired = smtpErr(530, smtp.EnhancedCode{5, 7, 0}, "Authentication required")
	errTempQueue    = smtpErr(451, smtp.EnhancedCode{4, 3, 0}, "Cannot queue the message now, try again later")
	errQueueFull    = smtpErr(452, smtp.EnhancedCode{4, 3, 1}, "Insufficient system storage, try again later")
)

// queueFailure is the reply to a message the queue could not take: 452
// 4.3.1 when the disk is full (RFC 5321 section 4.2.2, RFC 3463: mail
// system full), 451 4.3.0 otherwise. Either way nothing was acknowledged.
func queueFailure(err error) *smtp.SMTPError {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return errQueueFull
	}
	return errTempQueue
}

// session is one SMTP session (go-smtp starts a new one after STARTTLS).
type session struct {
	s    *Server
	ctx  context.Context
	mode Mode
	conn *smtp.Conn
	ip   netip.Addr
	log  *slog.Logger

	user         string // the authenticated user's login
	authFailures int
	junk         int // Resets since the last message

	opts *smtp.MailOptions
	tx   *decide.Transaction // the transaction in progress, nil between them
}

func newSession(s *Server, mode Mode, c *smtp.Conn) *session {
	ip := remoteIP(c.Conn())
	_, isTLS := c.TLSConnectionState()
	log := s.cfg.Log.With("mode", mode.String(), "client", ip.String())
	log.Debug("session", "helo", c.Hostname(), "tls", isTLS)
	return &session{s: s, mode: mode, conn: c, ip: ip, log: log}
}

// Reset ends the transaction (RSET, a new EHLO, the end of DATA).
func (ss *session) Reset() {
	ss.opts, ss.tx = nil, nil
	ss.junk++
	if ss.junk > ss.s.cfg.MaxJunkCommands {
		ss.log.Warn("closing: too many commands without a message")
		if tc := tracked(ss.conn); tc != nil {
			tc.Close()
		}
	}
}

func (ss *session) Logout() error { return nil }

// AuthMechanisms lists what the Authenticator offers; go-smtp only asks
// once TLS is up. The MX offers none.
func (ss *session) AuthMechanisms() []string {
	if ss.mode == MX || ss.s.cfg.Auth == nil {
		return nil
	}
	return ss.s.cfg.Auth.Mechanisms()
}

func (ss *session) Auth(mech string) (sasl.Server, error) {
	if ss.mode == MX || ss.s.cfg.Auth == nil {
		return nil, smtp.ErrAuthUnsupported
	}
	if n := ss.s.failures.Count(clientKey(ss.ip)); n >= ss.s.cfg.MaxAuthFailIP {
		ss.log.Warn("authentication refused: too many failures from this address", "failures", n)
		return nil, smtpErr(454, smtp.EnhancedCode{4, 7, 0}, "Too many failed authentications from your address, try again later")
	}
	if !slices.Contains(ss.s.cfg.Auth.Mechanisms(), strings.ToUpper(mech)) {
		return nil, smtp.ErrAuthUnknownMechanism
	}
	tlsState, _ := ss.conn.TLSConnectionState()
	inner, err := ss.s.cfg.Auth.Start(mech, &tlsState, ss.s.cfg.CertDER(), func(login string) {
		ss.user = login
		ss.log = ss.log.With("user", login)
		ss.log.Info("authenticated", "mechanism", strings.ToUpper(mech))
	})
	if err != nil {
		return nil, smtp.ErrAuthUnknownMechanism
	}
	return &guardedAuth{ss: ss, inner: inner}, nil
}

// guardedAuth counts failures, slows them down, and ends the connection
// after too many.
type guardedAuth struct {
	ss    *session
	inner sasl.Server
}

func (g *guardedAuth) Next(response []byte) ([]byte, bool, error) {
	ch, done, err := g.inner.Next(response)
	if err == nil {
		return ch, done, nil
	}
	ss := g.ss
	ss.authFailures++
	authFailuresTotal.Inc()
	ipFailures := ss.s.failures.Add(clientKey(ss.ip))
	// The reason and the login name are logged; never the response.
	ss.log.Warn("authentication failed", "err", err, "failures", ss.authFailures, "address_failures", ipFailures)
	if d := ss.s.cfg.AuthFailureDelay; d > 0 {
		time.Sleep(d * time.Duration(ss.authFailures))
	}
	if ss.authFailures >= ss.s.cfg.MaxAuthFailures {
		if tc := tracked(ss.conn); tc != nil {
			tc.closeAfter.Store(true)
		}
		return nil, false, smtpErr(421, smtp.EnhancedCode{4, 7, 0}, "%s Too many failed authentications, closing connection", ss.s.cfg.Hostname)
	}
	var mf interface{ IsMalformed() bool }
	if errors.As(err, &mf) && mf.IsMalformed() {
		return nil, false, smtpErr(501, smtp.EnhancedCode{5, 5, 2}, "Malformed authentication exchange")
	}
	return nil, false, smtp.ErrAuthFailed
}

// Mail starts a transaction (RFC 5321 §4.1.1.2): the syntax here, the
// decision in the steps.
func (ss *session) Mail(from string, opts *smtp.MailOptions) error {
	ss.Reset()
	ss.junk = 0
	if ss.mode != MX && ss.user == "" {
		return errAuthRequired
	}
	if from != "" {
		if _, err := mailaddr.Parse(from); err != nil {
			return smtpErr(553, smtp.EnhancedCode{5, 1, 7}, "Bad sender address syntax: %v", err)
		}
		if !opts.UTF8 && !isASCII(from) {
			return smtpErr(553, smtp.EnhancedCode{5, 6, 7}, "Non-ASCII address needs SMTPUTF8 (RFC 6531 section 3.4)")
		}
	}
	if opts.Size > ss.s.cfg.MaxSize {
		return smtp.ErrDataTooLarge
	}
	tlsState, isTLS := ss.conn.TLSConnectionState()
	sess := &decide.Session{Listener: ss.mode.String(), Client: ss.ip, Helo: ss.conn.Hostname(), User: ss.user}
	if isTLS {
		sess.TLS = &tlsState
	}
	tx := decide.NewTransaction(sess, from, decide.Params{UTF8: opts.UTF8, Body: string(opts.Body), Size: opts.Size,
		Ret: string(opts.Return), EnvID: opts.EnvelopeID, RequireTLS: opts.RequireTLS})
	if err := ss.s.cfg.Steps.Mail(ss.ctx, tx); err != nil {
		return ss.refusal("sender", err)
	}
	ss.opts, ss.tx = opts, tx
	return nil
}

// refusal turns a step's error into the reply: its own for a
// *reply.Reply, a temporary failure otherwise (ours, not the client's).
func (ss *session) refusal(what string, err error) error {
	if r, ok := reply.As(err); ok {
		return &smtp.SMTPError{Code: r.Code, EnhancedCode: smtp.EnhancedCode(r.Enhanced), Message: r.Text}
	}
	ss.log.Error("cannot decide", "on", what, "err", err)
	return smtpErr(451, smtp.EnhancedCode{4, 3, 0}, "Cannot decide now, try again later")
}

// Rcpt takes a recipient (RFC 5321 §4.1.1.3): the syntax here, where it
// goes (or whether it is refused) in the steps.
func (ss *session) Rcpt(to string, opts *smtp.RcptOptions) error {
	if ss.tx == nil {
		return smtpErr(503, smtp.EnhancedCode{5, 5, 1}, "MAIL first")
	}
	var a mailaddr.Address
	if strings.EqualFold(to, "postmaster") {
		a.Local = to // <Postmaster>: the steps know our domain
	} else {
		var err error
		if a, err = mailaddr.Parse(to); err != nil {
			return smtpErr(553, smtp.EnhancedCode{5, 1, 3}, "Bad recipient address syntax: %v", err)
		}
	}
	if !ss.opts.UTF8 && !isASCII(to) {
		return smtpErr(553, smtp.EnhancedCode{5, 6, 7}, "Non-ASCII address needs SMTPUTF8 (RFC 6531 section 3.4)")
	}
	r := &decide.Rcpt{Address: to, Addr: a}
	if len(opts.Notify) > 0 {
		var n []string
		for _, x := range opts.Notify {
			n = append(n, string(x))
		}
		r.Notify = strings.Join(n, ",")
	}
	if opts.OriginalRecipient != "" {
		r.ORcpt = string(opts.OriginalRecipientType) + ";" + opts.OriginalRecipient
	}
	if err := ss.s.cfg.Steps.Rcpt(ss.ctx, ss.tx, r); err != nil {
		return ss.refusal("recipient", err)
	}
	return nil
}

// Data receives the message into the queue and answers 250 only once it is
// there durably.
func (ss *session) Data(r io.Reader) error {
	tx := ss.tx
	if tx == nil || len(tx.Rcpts) == 0 {
		return smtpErr(503, smtp.EnhancedCode{5, 5, 1}, "RCPT first")
	}
	in, err := ss.s.cfg.Queue.Begin()
	if err != nil {
		ss.log.Error("cannot queue", "err", err)
		return queueFailure(err)
	}
	defer in.Abort()
	sc := newScanner()
	bp := dataBuffers.Get().(*[]byte)
	defer dataBuffers.Put(bp)
	buf := *bp
	for {
		ss.conn.Conn().SetReadDeadline(time.Now().Add(ss.s.cfg.ReadTimeout))
		n, rerr := r.Read(buf)
		if n > 0 {
			if _, err := sc.Write(buf[:n]); err != nil {
				ss.log.Warn("message refused", "err", err)
				return err
			}
			if _, err := in.Write(buf[:n]); err != nil {
				ss.log.Error("cannot queue", "err", err)
				return queueFailure(err)
			}
		}
		if rerr == io.EOF {
			break
		}
		if errors.Is(rerr, smtp.ErrTooLongLine) {
			// go-smtp closes the connection after this reply.
			ss.log.Info("message not received", "err", rerr)
			return smtpErr(500, smtp.EnhancedCode{5, 5, 2}, "Line too long: at most %d bytes", ss.s.cfg.MaxLineLength)
		}
		if ne, ok := errors.AsType[net.Error](rerr); ok && ne.Timeout() {
			// RFC 5321 §4.5.3.2.5: the data must keep coming. The
			// connection closes after the reply (go-smtp, on 421): the
			// rest of the data is not read as commands.
			ss.log.Info("message not received", "err", rerr)
			return smtpErr(421, smtp.EnhancedCode{4, 4, 2}, "%s Timeout reading the data, closing connection", ss.s.cfg.Hostname)
		}
		if rerr != nil {
			// Too large (an *smtp.SMTPError go-smtp answers as is), or
			// the connection broke.
			ss.log.Info("message not received", "err", rerr)
			return rerr
		}
	}
	if err := sc.close(); err != nil {
		ss.log.Warn("message refused", "err", err)
		return err
	}
	msg := &decide.Message{Header: sc.fields, Size: in.Size(), Open: in.Reader}
	if err := ss.s.cfg.Steps.Data(ss.ctx, tx, msg); err != nil {
		return ss.refusal("message", err)
	}
	if rm := tx.Removed(); len(rm) > 0 && len(tx.Recipients) > 0 {
		out, err := ss.s.cfg.Queue.Begin()
		if err != nil {
			ss.log.Error("cannot queue", "err", err)
			return queueFailure(err)
		}
		defer out.Abort()
		if err := copyWithout(out, in, msg.Header, rm); err != nil {
			ss.log.Error("cannot queue", "err", err)
			return queueFailure(err)
		}
		ss.log.Info("header fields removed", "fields", len(rm))
		in.Abort()
		in = out
	}
	if len(tx.Recipients) == 0 {
		tx.Accepted()
		ss.junk = -1
		text := tx.NoMessage
		if text == "" {
			text = "Accepted, nothing to deliver"
		}
		return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: text}
	}
	now := ss.s.cfg.Now()
	tlsState, isTLS := ss.conn.TLSConnectionState()
	tp := &tlsState
	if !isTLS {
		tp = nil
	}
	forRcpt := ""
	if len(tx.Rcpts) == 1 {
		forRcpt = tx.Rcpts[0]
	}
	m := &queue.Message{
		Received:   now,
		From:       tx.From,
		OrigFrom:   tx.OrigFrom,
		Recipients: tx.Recipients,
		ClientAddr: ss.ip.String(),
		Helo:       ss.conn.Hostname(),
		AuthUser:   ss.user,
		Ret:        tx.Params.Ret,
		EnvID:      tx.Params.EnvID,
		Body:       tx.Params.Body,
		SMTPUTF8:   tx.Params.UTF8,
		// RFC 8689 §4.1: the message is tagged with REQUIRETLS, or with
		// its TLS-Required header field (which REQUIRETLS overrides at
		// delivery, and which stays in the message).
		RequireTLS:    tx.Params.RequireTLS,
		TLSRequiredNo: tlsRequiredNo(msg.Header),
		// What the steps add goes above our Received field (RFC 5321
		// §4.4: trace fields are added at the top).
		Header: strings.Join(tx.Fields, "") + receivedHeader(trace{helo: ss.conn.Hostname(), ip: ss.ip, rdns: tx.ClientName, rdnsSecure: tx.ClientNameSecure, hostname: ss.s.cfg.Hostname,
			id: in.ID(), tls: tp, user: ss.user, utf8: tx.Params.UTF8, rcpt: forRcpt, requireTLS: tx.Params.RequireTLS}, now),
	}
	if err := ss.s.cfg.Queue.Commit(in, m); err != nil {
		ss.log.Error("cannot queue", "err", err)
		return queueFailure(err)
	}
	tx.Accepted()
	receivedTotal.Inc(ss.mode.String())
	metrics.Traffic.Add(metrics.Received, 1)
	ss.log.Info("queued", "id", m.ID, "from", m.From, "recipients", len(m.Recipients), "size", m.Size, "tls", isTLS,
		"requiretls", m.RequireTLS, "tls_required_no", m.TLSRequiredNo)
	ss.s.cfg.Deliver(m)
	ss.junk = -1 // the Reset that follows DATA is not junk
	// go-smtp answers an *SMTPError as given: this one says where it went.
	return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "Queued as " + m.ID}
}

// dataBuffers keeps the 32 KiB buffers DATA is read through for the next
// message (one allocated per message was much of the collector's work).
var dataBuffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// copyWithout copies the spooled message in to out, leaving out the
// header fields at the indexes rm (in order) of header.
func copyWithout(out io.Writer, in *queue.Incoming, header []decide.Field, rm []int) error {
	var at int64
	for _, i := range rm {
		f := header[i]
		if _, err := io.Copy(out, io.NewSectionReader(in, at, f.Start-at)); err != nil {
			return err
		}
		at = f.End
	}
	_, err := io.Copy(out, io.NewSectionReader(in, at, in.Size()-at))
	return err
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}
