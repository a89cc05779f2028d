package deliver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"elit.local/elit/dns"
	"elit.local/elit/mailaddr"
	"elit.local/elit/queue"
	"elit.local/elit/smtpclient"
)

// deliverDomain delivers the recipients idx of m with transport t: all at
// domain for direct delivery, any domain through a relay; in one
// transaction when it can. It returns one result per recipient.
func (d *Deliverer) deliverDomain(ctx context.Context, m *queue.Message, from string, t *Transport, domain string, idx []int) []result {
	all := func(r result) []result { return fill(len(idx), r) }
	type target struct {
		host string
		addr string // host:port
	}
	var targets []target
	if t.Type != "direct" {
		host, _, _ := net.SplitHostPort(t.Host)
		targets = []target{{host, t.Host}}
	} else if ip, ok := literalIP(domain); ok {
		// An address literal names the host itself (RFC 5321 §4.1.3): no
		// MX lookup, which is for domain names (§5.1).
		targets = []target{{ip.String(), net.JoinHostPort(ip.String(), d.cfg.Port)}}
	} else {
		hosts, res := d.mxHosts(ctx, domain)
		if res != nil {
			return all(*res)
		}
		for _, h := range hosts {
			addrs, err := d.cfg.Resolver.LookupAddrs(ctx, h)
			if err != nil {
				d.cfg.Log.Info("cannot resolve a mail exchanger", "host", h, "err", err)
				continue
			}
			for _, a := range addrs {
				targets = append(targets, target{h, net.JoinHostPort(a.String(), d.cfg.Port)})
			}
		}
		if len(targets) == 0 {
			return all(failure("4.4.3", "no address for the mail exchangers of %s", domain))
		}
	}
	release, err := d.sched.destination(ctx, domain+t.Host)
	if err != nil {
		return all(failure("4.4.1", "no attempt made: %v", err))
	}
	defer release()
	var last []result
	for _, tg := range targets {
		if ctx.Err() != nil {
			break
		}
		res, retryable := d.attempt(ctx, from, t, domain, tg.host, tg.addr, m, idx)
		if !retryable {
			return res
		}
		last = res
	}
	if last == nil {
		return all(failure("4.4.1", "no attempt made"))
	}
	return last
}

// fill returns n copies of r.
func fill(n int, r result) []result {
	out := make([]result, n)
	for i := range out {
		out[i] = r
	}
	return out
}

// literalIP returns the address of an address literal ([192.0.2.1],
// [IPv6:2001:db8::1]), as domainOf gives it.
func literalIP(domain string) (netip.Addr, bool) {
	if len(domain) < 2 || domain[0] != '[' || domain[len(domain)-1] != ']' {
		return netip.Addr{}, false
	}
	inner := domain[1 : len(domain)-1]
	if len(inner) > 5 && strings.EqualFold(inner[:5], "IPv6:") {
		inner = inner[5:]
	} else if strings.Contains(inner, ":") {
		return netip.Addr{}, false // a tag we do not know, or IPv6 untagged
	}
	ip, err := netip.ParseAddr(inner)
	if err != nil || ip.Zone() != "" {
		return netip.Addr{}, false
	}
	return ip, true
}

// mxHosts returns the hosts to try in order (RFC 5321 §5.1): MX records by
// preference, equal ones shuffled, or the domain itself without MX. A null
// MX (RFC 7505) or a domain that does not exist is a permanent failure.
// domain is in A-label form (domainOf): the DNS knows no U-labels.
func (d *Deliverer) mxHosts(ctx context.Context, domain string) ([]string, *result) {
	mxs, err := d.cfg.Resolver.LookupMX(ctx, domain)
	if errors.Is(err, dns.ErrNotFound) {
		r := failure("5.1.2", "domain %s does not exist", domain)
		return nil, &r
	}
	if err != nil {
		r := failure("4.4.3", "looking up the MX of %s: %v", domain, err)
		return nil, &r
	}
	if len(mxs) == 1 && (mxs[0].Host == "" || mxs[0].Host == ".") {
		r := failure("5.1.10", "%s accepts no mail (null MX, RFC 7505)", domain)
		return nil, &r
	}
	if len(mxs) == 0 {
		return []string{domain}, nil
	}
	shuffled := slices.Clone(mxs)
	for i := range shuffled {
		j := i + rand.IntN(len(shuffled)-i)
		shuffled[i], shuffled[j] = shuffled[j], shuffled[i]
	}
	slices.SortStableFunc(shuffled, func(a, b dns.MX) int { return int(a.Pref) - int(b.Pref) })
	hosts := make([]string, 0, len(shuffled))
	for _, mx := range shuffled {
		if mx.Host != "" && !slices.Contains(hosts, mx.Host) {
			hosts = append(hosts, mx.Host)
		}
	}
	return hosts, nil
}

// attempt delivers to one address of host, with the TLS the policy
// plans for it: each requirement in turn while TLS is what fails.
// retryable reports whether the next address may be tried (the session
// failed before the transaction); otherwise the results are final for
// this round.
func (d *Deliverer) attempt(ctx context.Context, from string, t *Transport, domain, host, addr string, m *queue.Message, idx []int) (res []result, retryable bool) {
	dest := TLSDestination{Transport: t.Type, Domain: domain, Host: host, ImplicitTLS: t.Type == "submission" && t.TLS == "implicit",
		// RFC 8689 §4.2.1 is for a message with a sender to tell; a
		// bounce of a REQUIRETLS message is not discarded for it (§5).
		RequireTLS:  m.RequireTLS && m.From != "",
		TLSOptional: m.TLSRequiredNo && !m.RequireTLS, // REQUIRETLS wins (§4.1)
		TLSReport:   m.TLSReport}
	if t.Type != "direct" {
		dest.Domain = ""
	}
	fail := func(r result) ([]result, bool) {
		r = r.at(host, addr, "")
		r.transport = t.Name
		return fill(len(idx), r), true
	}
	plan, err := d.cfg.TLSPolicy.TLSPlan(ctx, dest)
	if err == nil && len(plan.Requirements) == 0 {
		err = errors.New("no requirement")
	}
	if err != nil {
		d.reportPolicyError(dest, addr, plan, err)
		if !dest.TLSOptional {
			return fail(failure("4.7.5", "%s: TLS policy: %v", host, err))
		}
		d.cfg.Log.Info("TLS policy failed; TLS-Required: No, so delivering as without a policy", "id", m.ID, "host", host, "err", err)
		plan, _ = Opportunistic{}.TLSPlan(ctx, dest)
	}
	switch {
	case dest.RequireTLS:
		var r *result
		if plan, r = requireTLSPlan(dest, plan); r != nil {
			return fail(*r)
		}
	case dest.TLSOptional:
		plan = optionalPlan(plan)
	}
	key := sessionKey{t: t, domain: dest.Domain, host: host, addr: addr}
	if s := d.pool.get(key, plan, dest); s != nil {
		if res, retryable, ok := d.reuse(s, from, m, idx); ok {
			return res, retryable
		}
		// The session had ended while idle (the server closed it, RFC
		// 5321 §4.5.3.2.7): nothing was sent, so a new connection, and
		// this was no attempt.
	}
	var last []result
	for i := range plan.Requirements {
		res, retry, tlsFailed := d.session(ctx, from, t, dest, addr, plan, i, m, idx)
		if !tlsFailed {
			return res, retry
		}
		last = res
	}
	return last, true
}

// reportPolicyError tells the TLS reporter of a TLS policy that failed
// for a host (sts-policy-fetch-error, say): no connection was made.
func (d *Deliverer) reportPolicyError(dest TLSDestination, addr string, plan TLSPlan, err error) {
	d.cfg.TLSReporter.ReportTLS(TLSOutcome{TLSDestination: dest, Addr: addr, Policy: plan.Policy, PolicyDomain: plan.PolicyDomain,
		PolicyStrings: plan.PolicyStrings, MXHosts: plan.MXHosts, Achieved: TLSNone, Err: err, Failure: tlsFailure(err)})
}

// session runs one SMTP session to addr with the TLS that requirement i
// of plan asks for. tlsFailed reports that it could not be met: the next
// may be tried.
func (d *Deliverer) session(ctx context.Context, from string, t *Transport, dest TLSDestination, addr string, plan TLSPlan, i int, m *queue.Message, idx []int) (res []result, retryable, tlsFailed bool) {
	host, req := dest.Host, plan.Requirements[i]
	achieved := TLSNone
	all := func(r result) []result {
		r.tls, r.transport = achieved, t.Name
		return fill(len(idx), r)
	}
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	conn, err := d.dial(dctx, t, addr)
	cancel()
	if err != nil {
		return all(failure("4.4.1", "connecting to %s (%s): %v", host, addr, err).at(host, addr, smtpclient.StepConnect)), true, false
	}
	// From here every step's deadline ends with ctx (shutdown): the
	// session ends at once.
	sessionsOpened.Inc()
	c := smtpclient.New(ctx, conn, d.cfg.Timeout)
	kept := false
	defer func() {
		if !kept {
			c.Close()
		}
	}()
	roots := d.cfg.RootCAs
	if t.roots != nil {
		roots = t.roots
	}
	starttls := false // offered in the first EHLO reply
	report := func(err error) {
		o := TLSOutcome{TLSDestination: dest, Addr: addr, LocalAddr: conn.LocalAddr().String(), Policy: plan.Policy,
			PolicyDomain: plan.PolicyDomain, PolicyStrings: plan.PolicyStrings, MXHosts: plan.MXHosts,
			Required: req, Fallback: i > 0, Achieved: achieved, STARTTLS: starttls, Err: err}
		if cs, ok := c.TLS(); ok {
			o.Version, o.CipherSuite = cs.Version, cs.CipherSuite
			_, o.REQUIRETLS = c.Extension("REQUIRETLS")
		}
		if err != nil {
			o.Failure = tlsFailure(err)
			d.cfg.Log.Debug("TLS requirement not met", "host", host, "addr", addr, "mode", req.Mode, "required", req.Required, "failure", o.Failure, "err", err)
		} else {
			d.cfg.Destinations.note(o, d.cfg.Now(), d.cfg.Log)
		}
		d.cfg.TLSReporter.ReportTLS(o)
	}

	if dest.ImplicitTLS {
		r := req
		if r.Mode == TLSNone {
			r.Mode = TLSUnverified // the port speaks only TLS
		}
		if err := c.Handshake(tlsConfig(host, roots, r)); err != nil {
			report(err)
			return all(failure("4.7.5", "%s: TLS (%s): %v", host, r.Mode, err).at(host, addr, smtpclient.StepConnect)), true, true
		}
		achieved = r.Mode
	}
	if err := c.Hello(d.cfg.Hostname); err != nil {
		return all(sessionResult(host, addr, err)), true, false
	}
	_, starttls = c.Extension("STARTTLS")
	if achieved == TLSNone && req.Mode != TLSNone && starttls {
		if err := c.StartTLS(tlsConfig(host, roots, req)); err != nil {
			var e *smtpclient.Error
			if !errors.As(err, &e) || e.Step != smtpclient.StepSTARTTLS {
				achieved = req.Mode // TLS is up; EHLO in it failed
				report(nil)
				return all(sessionResult(host, addr, err)), true, false
			}
			report(err)
			r := sessionResult(host, addr, err)
			if e.Reply == nil {
				r = failure("4.7.5", "%s: TLS (%s): %v", host, req.Mode, e.Err).at(host, addr, smtpclient.StepSTARTTLS)
			}
			r.Permanent = false // another requirement, or the next attempt, may do
			return all(r), true, true
		}
		achieved = req.Mode
	} else if achieved == TLSNone && req.Required {
		report(errNoSTARTTLS)
		return all(failure("4.7.10", "%s offers no STARTTLS, which the TLS policy requires", host).at(host, addr, smtpclient.StepEHLO)), true, true
	}
	report(nil)
	if _, ok := c.Extension("REQUIRETLS"); dest.RequireTLS && !ok {
		// RFC 8689 §4.2.1 step 5: QUIT, and the next host may do.
		c.Quit()
		return all(failure("5.7.30", "%s does not offer REQUIRETLS, which the message requires (RFC 8689 section 4.2.1)", host).at(host, addr, smtpclient.StepEHLO)), true, false
	}
	if t.User != "" {
		if achieved != TLSVerified {
			// Whatever the policy says.
			return all(failure("4.7.10", "%s: not sending the password without verified TLS", host).at(host, addr, smtpclient.StepAUTH)), false, false
		}
		if r := d.authenticate(c, t, host, addr); r != nil {
			return all(*r), false, false
		}
	}
	s := &openSession{c: c, key: sessionKey{t: t, domain: dest.Domain, host: host, addr: addr, plan: planKey(plan, req)},
		achieved: achieved, opened: time.Now()}
	out, retryable, _ := d.transact(s, from, m, idx)
	if kept = d.pool.put(s); !kept {
		c.Quit()
	}
	return out, retryable, false
}

// reuse runs the transaction for idx on a session kept from an earlier
// one, after an RSET (RFC 5321 §4.1.1.5) that shows the server still
// there, sent with the transaction's commands when the server has
// PIPELINING. ok is false when the session had ended before the server
// answered MAIL: nothing was delivered, and the caller opens a new one.
func (d *Deliverer) reuse(s *openSession, from string, m *queue.Message, idx []int) (res []result, retryable, ok bool) {
	log := func() *slog.Logger {
		return d.cfg.Log.With("id", m.ID, "host", s.key.host, "addr", s.key.addr, "transactions", s.sent)
	}
	if err := s.c.ResetWithNext(); err != nil {
		log().Debug("a kept session has ended; a new one", "err", err)
		s.c.Close()
		return nil, false, false
	}
	sessionsReused.Inc()
	res, retryable, early := d.transact(s, from, m, idx)
	if early {
		log().Debug("a kept session ended before MAIL was answered; a new one", "err", res[0].Text)
		s.c.Close()
		return nil, false, false
	}
	if !d.pool.put(s) {
		s.c.Quit()
	}
	return res, retryable, true
}

// transact runs one transaction on s (send) and notes its TLS and
// transport in the results. early reports a session that broke before
// the server answered MAIL, which cannot have taken the message.
func (d *Deliverer) transact(s *openSession, from string, m *queue.Message, idx []int) (out []result, retryable, early bool) {
	s.sent++
	out, retryable, early = d.send(s.c, from, s.key.host, s.key.addr, m, idx)
	for i := range out {
		out[i].tls, out[i].transport = s.achieved, s.key.t.Name
	}
	return out, retryable, early
}

// authenticate logs in to a submission relay with the configured
// mechanism or the strongest offered. A failure is temporary: the
// operator can fix the password while the mail waits.
func (d *Deliverer) authenticate(c *smtpclient.Client, t *Transport, host, addr string) *result {
	mech, err := c.Login(t.User, t.Password, t.Mechanism)
	if err != nil {
		r := sessionResult(host, addr, err)
		if e := (*smtpclient.Error)(nil); errors.As(err, &e) && e.Reply == nil {
			r = failure("4.7.0", "%s: AUTH as %s: %v", host, t.User, e.Err).at(host, addr, smtpclient.StepAUTH)
		}
		r.Permanent = false
		return &r
	}
	d.cfg.Log.Debug("authenticated to the relay", "host", host, "mechanism", mech)
	return nil
}

// send runs one transaction for the recipients idx on an open session.
// retryable reports a session that broke before the data, whose next
// address may be tried; early one that broke before the server answered
// MAIL.
func (d *Deliverer) send(c *smtpclient.Client, from, host, addr string, m *queue.Message, idx []int) (out []result, retryable, early bool) {
	all := func(r result) []result { return fill(len(idx), r.at(host, addr, "")) } // decisions of ours
	sizeParam, hasSize := c.Extension("SIZE")
	if max, err := strconv.ParseInt(sizeParam, 10, 64); hasSize && err == nil && max > 0 && m.Size > max {
		return all(failure("5.3.4", "%s accepts at most %d bytes, the message has %d", host, max, m.Size)), false, false
	}
	_, hasUTF8 := c.Extension("SMTPUTF8")
	if m.SMTPUTF8 && !hasUTF8 {
		return all(failure("5.6.7", "%s does not support SMTPUTF8, which the message needs", host)), false, false
	}
	var env smtpclient.Envelope
	if hasSize {
		env.MailParams = append(env.MailParams, fmt.Sprintf("SIZE=%d", m.Size))
	}
	if _, ok := c.Extension("8BITMIME"); ok {
		if m.Body == "8BITMIME" || m.Body == "" {
			env.MailParams = append(env.MailParams, "BODY=8BITMIME")
		}
	} else if m.Body != "7BIT" {
		// RFC 6152 §3: convert or return. We return, and only messages
		// that really have 8-bit bytes.
		if eight, err := d.has8bit(m.ID); err != nil || eight {
			return all(failure("5.6.3", "%s does not support 8BITMIME and the message has 8-bit data", host)), false, false
		}
	}
	if m.SMTPUTF8 {
		env.MailParams = append(env.MailParams, "SMTPUTF8")
	}
	if m.RequireTLS {
		// Inside TLS, where a server offers it (RFC 8689 §4.2.1). Without
		// it only a bounce gets here (§5: not discarded for want of it).
		_, tlsOn := c.TLS()
		if _, ok := c.Extension("REQUIRETLS"); ok && tlsOn {
			env.MailParams = append(env.MailParams, "REQUIRETLS")
		} else {
			d.cfg.Log.Info("a REQUIRETLS bounce goes without REQUIRETLS: the server does not offer it (RFC 8689 section 5)", "id", m.ID, "host", host)
		}
	}
	// UTF-8 in the envelope only with SMTPUTF8, which the check above
	// makes sure the server has when the message asks for it.
	smtputf8 := m.SMTPUTF8 && hasUTF8
	env.From = wireAddress(from, smtputf8)
	_, dsn := c.Extension("DSN")
	if dsn {
		if m.Ret != "" {
			env.MailParams = append(env.MailParams, "RET="+m.Ret)
		}
		if m.EnvID != "" {
			env.MailParams = append(env.MailParams, "ENVID="+xtext(m.EnvID))
		}
	}
	for _, i := range idx {
		r := m.Recipients[i]
		var params []string
		if dsn && r.Notify != "" {
			params = append(params, "NOTIFY="+r.Notify)
		}
		if dsn && r.ORcpt != "" {
			if p, ok := orcptParam(r.ORcpt, smtputf8); ok {
				params = append(params, "ORCPT="+p)
			} else {
				d.cfg.Log.Info("ORCPT left out: not an address", "id", m.ID, "to", r.Address, "orcpt", r.ORcpt)
			}
		}
		env.Rcpts = append(env.Rcpts, smtpclient.Rcpt{To: wireAddress(r.Address, smtputf8), Params: params})
	}
	f, err := d.cfg.Queue.DataOf(m)
	if err != nil {
		return fill(len(idx), failure("4.3.0", "reading the queued data: %v", err)), false, false
	}
	defer f.Close()
	final, errs := c.Transaction(env, f, m.Size)
	out = make([]result, len(idx))
	for k := range idx {
		if errs[k] != nil {
			out[k] = sessionResult(host, addr, errs[k])
			continue
		}
		out[k] = replyResult(final).at(host, addr, smtpclient.StepDATA)
		notify := strings.ToUpper(m.Recipients[idx[k]].Notify)
		out[k].relayed = !dsn && strings.Contains(notify, "SUCCESS")
	}
	var e *smtpclient.Error
	failed := len(errs) > 0 && errors.As(errs[0], &e)
	if failed && e.Step == smtpclient.StepRSET {
		return out, true, true // a kept session that ended (ResetWithNext), whatever it said
	}
	retryable = failed && e.Reply == nil && (e.Step == smtpclient.StepMAIL || e.Step == smtpclient.StepRCPT)
	early = retryable && e.Step == smtpclient.StepMAIL
	return out, retryable, early
}

// wireAddress returns addr as it goes in MAIL or RCPT: as it is with
// SMTPUTF8; otherwise with its domain in A-labels (RFC 6531 keeps UTF-8
// addresses to SMTPUTF8 transactions; the A-label form is the same
// domain, RFC 5890 §2.3.2.1). A non-ASCII local part has no ASCII form:
// it goes as it is, for the server to refuse.
func wireAddress(addr string, smtputf8 bool) string {
	at := strings.LastIndexByte(addr, '@')
	if smtputf8 || at < 0 || isASCII(addr[at+1:]) {
		return addr
	}
	d, err := mailaddr.CanonicalDomain(addr[at+1:])
	if err != nil {
		return addr
	}
	return addr[:at+1] + d
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// orcptParam encodes a recipient's original recipient, "type;address" as
// the queue keeps it (decoded), for the ORCPT parameter (RFC 3461 §4.2):
// an rfc822 address in xtext; a utf-8 one (RFC 6533 §3) in
// utf-8-addr-unitext when the transaction has SMTPUTF8, otherwise in
// utf-8-addr-xtext, the 7-bit form. ok is false for a value that is no
// address and cannot be encoded (the parameter is optional: better left
// out than the recipient refused for it).
func orcptParam(v string, unitext bool) (string, bool) {
	typ, addr, ok := strings.Cut(v, ";")
	if !ok || typ == "" || addr == "" || !isAtom(typ) {
		return "", false
	}
	if !strings.EqualFold(typ, "utf-8") {
		return typ + ";" + xtext(addr), true
	}
	enc, ok := utf8AddrText(addr, unitext)
	if !ok {
		return "", false
	}
	return typ + ";" + enc, true
}

// utf8AddrText encodes an address as utf-8-addr-xtext, or with unitext as
// utf-8-addr-unitext (RFC 6533 §3): QCHARs (printable ASCII but "+", "="
// and "\") as they are, non-ASCII characters as they are in unitext, and
// the rest as EmbeddedUnicodeChar "\x{HEXPOINT}", upper-case hex of at
// least two digits. HEXPOINT has no form for NUL, U+000A–U+000F and
// U+001A–U+001F, which no address has: ok is false for them (and for
// invalid UTF-8).
func utf8AddrText(addr string, unitext bool) (string, bool) {
	if !utf8.ValidString(addr) {
		return "", false
	}
	var b strings.Builder
	for _, r := range addr {
		switch {
		case r >= '!' && r <= '~' && r != '+' && r != '=' && r != '\\': // QCHAR
			b.WriteRune(r)
		case r >= 0x80 && unitext: // QUCHAR
			b.WriteRune(r)
		case r >= 0x80, r == '+', r == '=', r == '\\', r == ' ', r == 0x7f,
			r >= 0x01 && r <= 0x09, r >= 0x10 && r <= 0x19:
			fmt.Fprintf(&b, "\\x{%02X}", r)
		default:
			return "", false
		}
	}
	return b.String(), true
}

// isAtom reports whether s is a DSN address type: letters, digits and
// hyphens (the registered ones, RFC 3461 §4.2; RFC 6533 §3).
func isAtom(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return s != ""
}

// xtext encodes a DSN parameter value (RFC 3461 §4).
func xtext(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '!' || c > '~' || c == '+' || c == '=' {
			fmt.Fprintf(&b, "+%02X", c)
		} else {
			b.WriteByte(c)
		}
	}
	return b.String()
}

// has8bit reports whether a queued message has a byte over 127.
func (d *Deliverer) has8bit(id string) (bool, error) {
	f, err := d.cfg.Queue.Data(id)
	if err != nil {
		return false, err
	}
	defer f.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := f.Read(buf)
		for _, c := range buf[:n] {
			if c >= 0x80 {
				return true, nil
			}
		}
		if err == io.EOF {
			return false, nil
		}
		if err != nil {
			return false, err
		}
	}
}
