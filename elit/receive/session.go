package receive

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/mail"
	"net/netip"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"elit.local/elit/auth"
	"elit.local/elit/lists"
	"elit.local/elit/mailaddr"
	"elit.local/elit/metrics"
	"elit.local/elit/queue"
	"elit.local/elit/srs"
	"elit.local/elit/userdb"
)

func smtpErr(code int, ec smtp.EnhancedCode, format string, args ...any) *smtp.SMTPError {
	return &smtp.SMTPError{Code: code, EnhancedCode: ec, Message: fmt.Sprintf(format, args...)}
}

var (
	receivedTotal     = metrics.Default.NewCounterVec("elit_received_messages_total", "Messages queued, by listener.", "listener")
	authFailuresTotal = metrics.Default.NewCounter("elit_auth_failures_total", "Failed SASL authentications.")
	rcptRefusedTotal  = metrics.Default.NewCounterVec("elit_recipients_refused_total", "RCPT commands refused, by reason.", "reason")
)

var (
	errAuthRequired = smtpErr(530, smtp.EnhancedCode{5, 7, 0}, "Authentication required")
	errTempQueue    = smtpErr(451, smtp.EnhancedCode{4, 3, 0}, "Cannot queue the message now, try again later")
)

// session is one SMTP session (go-smtp starts a new one after STARTTLS).
type session struct {
	s    *Server
	mode Mode
	conn *smtp.Conn
	ip   netip.Addr
	log  *slog.Logger

	user         *userdb.User
	authFailures int
	junk         int // Resets since the last message

	db     *userdb.DB // for the transaction in progress
	from   string
	opts   *smtp.MailOptions
	rcpts  []queue.Recipient
	orig   []string // the RCPT addresses, for logs and Received
	seenTo map[string]bool
	// bounces to list member addresses: list, member
	listBounces [][2]string
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
	ss.db, ss.from, ss.opts, ss.rcpts, ss.orig, ss.seenTo, ss.listBounces = nil, "", nil, nil, nil, nil, nil
	ss.junk++
	if ss.junk > ss.s.cfg.MaxJunkCommands {
		ss.log.Warn("closing: too many commands without a message")
		if tc := tracked(ss.conn); tc != nil {
			tc.Close()
		}
	}
}

func (ss *session) Logout() error { return nil }

// AuthMechanisms lists what the database's secrets support; go-smtp only
// asks once TLS is up. The MX offers none.
func (ss *session) AuthMechanisms() []string {
	if ss.mode == MX {
		return nil
	}
	return ss.s.cfg.Users().Mechanisms()
}

func (ss *session) Auth(mech string) (sasl.Server, error) {
	if ss.mode == MX {
		return nil, smtp.ErrAuthUnsupported
	}
	if n := ss.s.failures.count(clientKey(ss.ip)); n >= ss.s.cfg.MaxAuthFailIP {
		ss.log.Warn("authentication refused: too many failures from this address", "failures", n)
		return nil, smtpErr(454, smtp.EnhancedCode{4, 7, 0}, "Too many failed authentications from your address, try again later")
	}
	db := ss.s.cfg.Users()
	mechs := db.Mechanisms()
	if !slices.Contains(mechs, strings.ToUpper(mech)) {
		return nil, smtp.ErrAuthUnknownMechanism
	}
	tlsState, _ := ss.conn.TLSConnectionState()
	cfg := &auth.Config{
		Hostname:       ss.s.cfg.Hostname,
		TLS:            &tlsState,
		CertDER:        ss.s.cfg.CertDER(),
		PlusAdvertised: slices.Contains(mechs, "SCRAM-SHA-256-PLUS"),
	}
	inner, err := auth.New(mech, db, cfg, func(u *userdb.User) {
		ss.user = u
		ss.log = ss.log.With("user", u.Name)
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
	ipFailures := ss.s.failures.add(clientKey(ss.ip))
	var ae *auth.Error
	errors.As(err, &ae)
	login := ""
	if ae != nil {
		login = ae.Login
	}
	// The reason and the login name are logged; never the response.
	ss.log.Warn("authentication failed", "login", login, "err", err, "failures", ss.authFailures, "address_failures", ipFailures)
	if d := ss.s.cfg.AuthFailureDelay; d > 0 {
		time.Sleep(d * time.Duration(ss.authFailures))
	}
	if ss.authFailures >= ss.s.cfg.MaxAuthFailures {
		if tc := tracked(ss.conn); tc != nil {
			tc.closeAfter.Store(true)
		}
		return nil, false, smtpErr(421, smtp.EnhancedCode{4, 7, 0}, "%s Too many failed authentications, closing connection", ss.s.cfg.Hostname)
	}
	if ae != nil && ae.Malformed {
		return nil, false, smtpErr(501, smtp.EnhancedCode{5, 5, 2}, "Malformed authentication exchange")
	}
	return nil, false, smtp.ErrAuthFailed
}

// Mail starts a transaction (RFC 5321 §4.1.1.2).
func (ss *session) Mail(from string, opts *smtp.MailOptions) error {
	ss.Reset()
	ss.junk = 0
	if ss.mode != MX && ss.user == nil {
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
	db := ss.s.cfg.Users()
	if ss.user != nil && !db.CanSendAs(ss.user, from) {
		ss.log.Warn("sender refused: not the user's address", "from", from)
		return smtpErr(550, smtp.EnhancedCode{5, 7, 1}, "Sender address <%s> is not yours", from)
	}
	if opts.Size > ss.s.cfg.MaxSize {
		return smtp.ErrDataTooLarge
	}
	ss.db, ss.from, ss.opts = db, from, opts
	return nil
}

// Rcpt checks a recipient at once (RFC 5321 §4.1.1.3): local ones must
// exist, others are only for authenticated users (no open relay).
func (ss *session) Rcpt(to string, opts *smtp.RcptOptions) error {
	if ss.db == nil {
		return smtpErr(503, smtp.EnhancedCode{5, 5, 1}, "MAIL first")
	}
	db := ss.db
	if strings.EqualFold(to, "postmaster") {
		// RFC 5321 §4.1.1.3: <Postmaster> without a domain is ours.
		to = "postmaster@" + db.Domain()
	}
	a, err := mailaddr.Parse(to)
	if err != nil {
		return smtpErr(553, smtp.EnhancedCode{5, 1, 3}, "Bad recipient address syntax: %v", err)
	}
	if !ss.opts.UTF8 && !isASCII(to) {
		return smtpErr(553, smtp.EnhancedCode{5, 6, 7}, "Non-ASCII address needs SMTPUTF8 (RFC 6531 section 3.4)")
	}
	if lists.IsBounceAddress(to) && db.IsLocalDomain(a.Domain) && ss.s.cfg.ListSigner != nil && ss.s.cfg.ListBounce != nil {
		// A bounce about a member of one of our lists: counted at the end
		// of DATA, not delivered; only with our signature, and only for a
		// member of the list.
		list, member, ok := ss.s.cfg.ListSigner.ParseBounceAddress(to)
		if u := db.Lookup(list); ok && u != nil && len(u.Mailboxes) > 1 && isMember(u, member) {
			ss.listBounces = append(ss.listBounces, [2]string{u.Address, member})
			ss.orig = append(ss.orig, to)
			return nil
		}
		ss.log.Info("recipient refused: bad list bounce address", "to", to)
		rcptRefusedTotal.Inc("list-bounce")
		return smtpErr(550, smtp.EnhancedCode{5, 1, 1}, "<%s>: no such user here", to)
	}
	listAddr := ""
	var targets []string
	switch {
	case ss.s.cfg.SRS != nil && srs.IsSRS(a.Local) && sameDomain(a.Domain, ss.s.cfg.SRS.Domain):
		// A bounce (or reply) to an address we rewrote: send it on.
		orig, err := ss.s.cfg.SRS.Reverse(to)
		if err != nil {
			ss.log.Info("recipient refused: SRS", "to", to, "err", err)
			rcptRefusedTotal.Inc("srs")
			return smtpErr(550, smtp.EnhancedCode{5, 1, 1}, "<%s>: invalid or expired SRS address", to)
		}
		targets = []string{orig}
	case db.IsLocalDomain(a.Domain):
		targets, err = db.Expand(to)
		if errors.Is(err, userdb.ErrUnknown) && strings.EqualFold(a.Local, "postmaster") && ss.s.cfg.Postmaster != "" {
			// RFC 5321 §4.5.1: postmaster must always be accepted.
			targets, err = db.Expand(ss.s.cfg.Postmaster)
			if err != nil || len(targets) == 0 {
				targets, err = []string{ss.s.cfg.Postmaster}, nil
			}
		}
		switch {
		case errors.Is(err, userdb.ErrUnknown):
			ss.log.Info("recipient refused: unknown", "to", to)
			rcptRefusedTotal.Inc("unknown")
			return smtpErr(550, smtp.EnhancedCode{5, 1, 1}, "<%s>: no such user here", to)
		case err != nil:
			ss.log.Error("recipient refused: cannot expand", "to", to, "err", err)
			return smtpErr(550, smtp.EnhancedCode{5, 4, 6}, "<%s>: cannot be expanded (routing loop)", to)
		case len(targets) == 0:
			return smtpErr(550, smtp.EnhancedCode{5, 1, 1}, "<%s>: this address has no mailbox", to)
		}
		if u := db.Lookup(to); u != nil && len(u.Mailboxes) > 1 {
			listAddr = u.Address
		}
	case ss.user != nil:
		targets = []string{to}
	default:
		ss.log.Info("recipient refused: relay", "to", to, "from", ss.from)
		rcptRefusedTotal.Inc("relay")
		return smtpErr(554, smtp.EnhancedCode{5, 7, 1}, "<%s>: relay access denied", to)
	}
	var notify, orcpt string
	if len(opts.Notify) > 0 {
		var n []string
		for _, x := range opts.Notify {
			n = append(n, string(x))
		}
		notify = strings.Join(n, ",")
	}
	if opts.OriginalRecipient != "" {
		orcpt = string(opts.OriginalRecipientType) + ";" + opts.OriginalRecipient
	}
	if ss.seenTo == nil {
		ss.seenTo = map[string]bool{}
	}
	for _, t := range targets {
		key := strings.ToLower(t)
		if ta, err := mailaddr.Parse(t); err == nil {
			key = ta.Canonical()
		}
		if ss.seenTo[key] {
			continue // a list member also named directly, say: once is enough
		}
		ss.seenTo[key] = true
		r := queue.Recipient{Address: t, Notify: notify, ORcpt: orcpt, List: listAddr}
		if t != to {
			r.Original = to
		}
		ss.rcpts = append(ss.rcpts, r)
	}
	ss.orig = append(ss.orig, to)
	return nil
}

// Data receives the message into the queue and answers 250 only once it is
// there durably.
func (ss *session) Data(r io.Reader) error {
	if ss.db == nil || len(ss.orig) == 0 {
		return smtpErr(503, smtp.EnhancedCode{5, 5, 1}, "RCPT first")
	}
	in, err := ss.s.cfg.Queue.Begin()
	if err != nil {
		ss.log.Error("cannot queue", "err", err)
		return errTempQueue
	}
	defer in.Abort()
	now := ss.s.cfg.Now()
	tlsState, isTLS := ss.conn.TLSConnectionState()
	tp := &tlsState
	if !isTLS {
		tp = nil
	}
	userName := ""
	if ss.user != nil {
		userName = ss.user.Name
	}
	forRcpt := ""
	if len(ss.orig) == 1 {
		forRcpt = ss.orig[0]
	}
	hdr := receivedHeader(ss.conn.Hostname(), ss.ip, ss.s.cfg.Hostname, in.ID(), tp, userName, ss.opts.UTF8, forRcpt, now)
	if _, err := io.WriteString(in, hdr); err != nil {
		ss.log.Error("cannot queue", "err", err)
		return errTempQueue
	}
	sc := newScanner()
	buf := make([]byte, 32<<10)
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
				return errTempQueue
			}
		}
		if rerr == io.EOF {
			break
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
	if sc.received+1 > ss.s.cfg.MaxHops {
		ss.log.Warn("message refused: too many hops", "received", sc.received)
		return smtpErr(554, smtp.EnhancedCode{5, 4, 6}, "Too many hops (%d Received fields): mail loop?", sc.received)
	}
	if ss.user != nil {
		if err := ss.checkHeaderFrom(sc.from); err != nil {
			return err
		}
	}
	for _, b := range ss.listBounces {
		ss.log.Info("list bounce", "list", b[0], "member", b[1], "from", ss.from)
		ss.s.cfg.ListBounce(b[0], b[1], fmt.Sprintf("bounce from <%s> (%s)", ss.from, ss.ip))
	}
	if len(ss.rcpts) == 0 {
		ss.junk = -1
		return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "Bounce recorded"}
	}
	from, origFrom := ss.from, ""
	if ss.mode == MX && ss.s.cfg.SRS != nil && from != "" {
		// Forwarded mail: a sender at our domain so that SPF passes at the
		// destination (the SRS package leaves our own addresses alone).
		if a, err := mailaddr.Parse(from); err == nil && !ss.db.IsLocalDomain(a.Domain) {
			if rewritten, err := ss.s.cfg.SRS.Forward(from); err == nil && rewritten != from {
				from, origFrom = rewritten, ss.from
			}
		}
	}
	m := &queue.Message{
		Received:   now,
		From:       from,
		OrigFrom:   origFrom,
		Recipients: ss.rcpts,
		ClientAddr: ss.ip.String(),
		Helo:       ss.conn.Hostname(),
		AuthUser:   userName,
		Ret:        string(ss.opts.Return),
		EnvID:      ss.opts.EnvelopeID,
		Body:       string(ss.opts.Body),
		SMTPUTF8:   ss.opts.UTF8,
	}
	if err := ss.s.cfg.Queue.Commit(in, m); err != nil {
		ss.log.Error("cannot queue", "err", err)
		return errTempQueue
	}
	receivedTotal.Inc(ss.mode.String())
	ss.log.Info("queued", "id", m.ID, "from", m.From, "recipients", len(m.Recipients), "size", m.Size, "tls", isTLS)
	ss.s.cfg.Deliver(m)
	ss.junk = -1 // the Reset that follows DATA is not junk
	// go-smtp answers an *SMTPError as given: this one says where it went.
	return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "Queued as " + m.ID}
}

// checkHeaderFrom requires exactly one From field (RFC 5322 §3.6) whose
// addresses the authenticated user may all send as.
func (ss *session) checkHeaderFrom(values []string) error {
	if len(values) != 1 {
		return smtpErr(550, smtp.EnhancedCode{5, 6, 0}, "Message must have exactly one From header field (RFC 5322 section 3.6), it has %d", len(values))
	}
	list, err := mail.ParseAddressList(strings.TrimSpace(values[0]))
	if err != nil || len(list) == 0 {
		return smtpErr(550, smtp.EnhancedCode{5, 6, 0}, "Cannot parse the From header field")
	}
	for _, a := range list {
		if !ss.db.CanSendAs(ss.user, a.Address) {
			ss.log.Warn("message refused: header From is not the user's", "header_from", a.Address)
			return smtpErr(550, smtp.EnhancedCode{5, 7, 1}, "From: %s is not yours", a.Address)
		}
	}
	return nil
}

// sameDomain reports whether two domains are one, in U-label or A-label
// form.
func sameDomain(a, b string) bool {
	ca, err1 := mailaddr.CanonicalDomain(a)
	cb, err2 := mailaddr.CanonicalDomain(b)
	return err1 == nil && err2 == nil && ca == cb
}

// isMember reports whether member is one of u's mailboxes.
func isMember(u *userdb.User, member string) bool {
	m, err := mailaddr.Parse(member)
	if err != nil {
		return false
	}
	for _, mb := range u.Mailboxes {
		if a, err := mailaddr.Parse(mb); err == nil && a.Canonical() == m.Canonical() {
			return true
		}
	}
	return false
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}
