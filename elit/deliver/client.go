package deliver

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/emersion/go-smtp"

	"elit.local/elit/auth"
	"elit.local/elit/dns"
	"elit.local/elit/queue"
)

// deliverDomain delivers the recipients idx of m with transport t: all at
// domain for direct delivery, any domain through a relay; in one
// transaction when it can. It returns one result per recipient.
func (d *Deliverer) deliverDomain(ctx context.Context, m *queue.Message, from string, t *Transport, domain string, idx []int) []result {
	all := func(r result) []result {
		out := make([]result, len(idx))
		for i := range out {
			out[i] = r
		}
		return out
	}
	type target struct {
		host string
		addr string // host:port
	}
	var targets []target
	if t.Type != "direct" {
		host, _, _ := net.SplitHostPort(t.Host)
		targets = []target{{host, t.Host}}
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
			return all(tempFail("4.4.3 no address for the mail exchangers of %s", domain))
		}
	}
	release := d.destination(domain + t.Host)
	defer release()
	var last []result
	for _, tg := range targets {
		if ctx.Err() != nil {
			break
		}
		res, retryable := d.attempt(ctx, from, t, tg.host, tg.addr, m, idx)
		if !retryable {
			return res
		}
		last = res
	}
	if last == nil {
		return all(tempFail("4.4.1 no attempt made"))
	}
	return last
}

// mxHosts returns the hosts to try in order (RFC 5321 §5.1): MX records by
// preference, equal ones shuffled, or the domain itself without MX. A null
// MX (RFC 7505) or a domain that does not exist is a permanent failure.
func (d *Deliverer) mxHosts(ctx context.Context, domain string) ([]string, *result) {
	mxs, err := d.cfg.Resolver.LookupMX(ctx, domain)
	if errors.Is(err, dns.ErrNotFound) {
		r := permFail("5.1.2 domain %s does not exist", domain)
		return nil, &r
	}
	if err != nil {
		r := tempFail("4.4.3 looking up the MX of %s: %v", domain, err)
		return nil, &r
	}
	if len(mxs) == 1 && (mxs[0].Host == "" || mxs[0].Host == ".") {
		r := permFail("5.1.10 %s accepts no mail (null MX, RFC 7505)", domain)
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

// TLS modes of an attempt, best first.
const (
	tlsVerified   = "verified"   // STARTTLS, certificate valid for the MX host
	tlsUnverified = "unverified" // STARTTLS, certificate not checked
	tlsNone       = "none"       // plaintext
)

// attempt delivers to one address. retryable reports whether the next
// address may be tried (the connection failed before the transaction);
// otherwise the results are final for this round.
func (d *Deliverer) attempt(ctx context.Context, from string, t *Transport, host, addr string, m *queue.Message, idx []int) (res []result, retryable bool) {
	// Without a policy in force (MTA-STS, DANE: the hook is here), a TLS
	// failure falls back to unverified TLS, then to plaintext. A
	// submission relay gets our password: verified TLS only.
	modes := []string{tlsVerified, tlsUnverified, tlsNone}
	if t.Type == "submission" {
		modes = modes[:1]
	}
	var last []result
	for _, mode := range modes {
		res, retry, tlsFailed := d.transaction(ctx, from, t, host, addr, mode, m, idx)
		if !tlsFailed {
			return res, retry
		}
		last = res
	}
	return last, true
}

// transaction runs one SMTP session. tlsFailed reports that STARTTLS was
// offered but could not be completed in this mode.
func (d *Deliverer) transaction(ctx context.Context, from string, t *Transport, host, addr, mode string, m *queue.Message, idx []int) (res []result, retryable, tlsFailed bool) {
	all := func(r result) []result {
		r.host, r.tls, r.transport = host, mode, t.Name
		out := make([]result, len(idx))
		for i := range out {
			out[i] = r
		}
		return out
	}
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	conn, err := d.dial(dctx, t, addr)
	cancel()
	if err != nil {
		return all(tempFail("4.4.1 connecting to %s (%s): %v", host, addr, err)), true, false
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	conn.SetDeadline(time.Now().Add(d.cfg.Timeout))
	roots := d.cfg.RootCAs
	if t.roots != nil {
		roots = t.roots
	}
	tlsConfig := &tls.Config{ServerName: host, RootCAs: roots, MinVersion: tls.VersionTLS12}

	if t.Type == "submission" && t.TLS == "implicit" {
		tc := tls.Client(conn, tlsConfig)
		if err := tc.HandshakeContext(ctx); err != nil {
			return all(tempFail("4.7.5 %s: TLS: %v", host, err)), true, false
		}
		cl := smtp.NewClient(tc)
		cl.CommandTimeout = d.cfg.Timeout
		cl.SubmissionTimeout = 2 * d.cfg.Timeout
		defer cl.Close()
		if err := cl.Hello(d.cfg.Hostname); err != nil {
			return all(smtpResult(host, "EHLO", err)), true, false
		}
		if r := d.authenticate(cl, t, host); r != nil {
			return all(*r), false, false
		}
		return d.send(cl, from, t, host, tlsVerified, m, idx)
	}

	// The greeting and first EHLO by hand, to choose TLS before go-smtp's
	// client takes over.
	br := bufio.NewReader(conn)
	code, text, err := readReply(br)
	if err != nil {
		return all(tempFail("4.4.2 %s: reading the greeting: %v", host, err)), true, false
	}
	if code != 220 {
		return all(tempFail("4.4.2 %s greeted with %d %s", host, code, text)), true, false
	}
	fmt.Fprintf(conn, "EHLO %s\r\n", d.cfg.Hostname)
	code, text, err = readReply(br)
	if err != nil || code != 250 {
		return all(tempFail("4.4.2 %s: EHLO: %d %s %v", host, code, text, err)), true, false
	}
	startTLS := hasExtension(text, "STARTTLS")
	var c net.Conn = conn
	actual := tlsNone
	if startTLS && mode != tlsNone {
		fmt.Fprintf(conn, "STARTTLS\r\n")
		if code, text, err = readReply(br); err != nil || code != 220 {
			return all(tempFail("4.7.0 %s: STARTTLS: %d %s %v", host, code, text, err)), true, true
		}
		cfg := tlsConfig
		if mode == tlsUnverified {
			cfg = tlsConfig.Clone()
			cfg.InsecureSkipVerify = true
		}
		tc := tls.Client(conn, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			return all(tempFail("4.7.5 %s: TLS (%s): %v", host, mode, err)), true, true
		}
		c, actual = tc, mode
	}
	// go-smtp's client expects a greeting: replay one, it then says EHLO
	// again (as RFC 3207 §4.2 requires after TLS).
	if actual == tlsNone {
		c = &replayConn{Conn: conn, r: io.MultiReader(strings.NewReader("220 resumed\r\n"), br)}
	} else {
		c = &replayConn{Conn: c, r: io.MultiReader(strings.NewReader("220 resumed\r\n"), c)}
	}
	cl := smtp.NewClient(c)
	cl.CommandTimeout = d.cfg.Timeout
	cl.SubmissionTimeout = 2 * d.cfg.Timeout
	defer cl.Close()
	if err := cl.Hello(d.cfg.Hostname); err != nil {
		return all(smtpResult(host, "EHLO", err)), true, false
	}
	if t.Type == "submission" {
		if actual != tlsVerified {
			return all(tempFail("4.7.10 %s offers no STARTTLS: not sending the password in the clear", host)), false, false
		}
		if r := d.authenticate(cl, t, host); r != nil {
			return all(*r), false, false
		}
	}
	return d.send(cl, from, t, host, actual, m, idx)
}

// authenticate logs in to a submission relay with the configured
// mechanism or the strongest offered. A failure is temporary: the
// operator can fix the password while the mail waits.
func (d *Deliverer) authenticate(cl *smtp.Client, t *Transport, host string) *result {
	if t.User == "" {
		return nil
	}
	_, offered := cl.Extension("AUTH")
	mechs := strings.Fields(strings.ToUpper(offered))
	mech := ""
	for _, m := range auth.ClientMechanisms {
		if (t.Mechanism == "" || strings.EqualFold(t.Mechanism, m)) && slices.Contains(mechs, m) {
			mech = m
			break
		}
	}
	if mech == "" {
		r := tempFail("4.7.0 %s offers AUTH %q, none we can use", host, offered)
		return &r
	}
	sc, _ := auth.NewClient(mech, t.User, t.Password)
	if err := cl.Auth(sc); err != nil {
		r := tempFail("4.7.0 %s: AUTH %s as %s: %v", host, mech, t.User, err)
		return &r
	}
	d.cfg.Log.Debug("authenticated to the relay", "host", host, "mechanism", mech)
	return nil
}

// send runs MAIL, RCPT and DATA on an open session.
func (d *Deliverer) send(cl *smtp.Client, from string, t *Transport, host, mode string, m *queue.Message, idx []int) ([]result, bool, bool) {
	out := make([]result, len(idx))
	all := func(r result) []result {
		r.host, r.tls, r.transport = host, mode, t.Name
		for i := range out {
			out[i] = r
		}
		return out
	}
	if max, ok := cl.MaxMessageSize(); ok && max > 0 && m.Size > int64(max) {
		return all(permFail("5.3.4 %s accepts at most %d bytes, the message has %d", host, max, m.Size)), false, false
	}
	if m.SMTPUTF8 {
		if ok, _ := cl.Extension("SMTPUTF8"); !ok {
			return all(permFail("5.6.7 %s does not support SMTPUTF8, which the message needs", host)), false, false
		}
	}
	if ok, _ := cl.Extension("8BITMIME"); !ok && m.Body != "7BIT" {
		// RFC 6152 §3: convert or return. We return, and only messages
		// that really have 8-bit bytes.
		if eight, err := d.has8bit(m.ID); err != nil || eight {
			return all(permFail("5.6.3 %s does not support 8BITMIME and the message has 8-bit data", host)), false, false
		}
	}
	dsn, _ := cl.Extension("DSN")
	opts := &smtp.MailOptions{Size: m.Size, UTF8: m.SMTPUTF8}
	if dsn {
		opts.Return = smtp.DSNReturn(m.Ret)
		opts.EnvelopeID = m.EnvID
	}
	if err := cl.Mail(from, opts); err != nil {
		r := smtpResult(host, "MAIL", err)
		return all(r), !r.permanent && isConnError(err), false
	}
	accepted := 0
	for k, i := range idx {
		r := m.Recipients[i]
		var ropts *smtp.RcptOptions
		if dsn && (r.Notify != "" || r.ORcpt != "") {
			ropts = &smtp.RcptOptions{}
			for _, n := range strings.Split(r.Notify, ",") {
				if n != "" {
					ropts.Notify = append(ropts.Notify, smtp.DSNNotify(n))
				}
			}
			if t, a, ok := strings.Cut(r.ORcpt, ";"); ok {
				ropts.OriginalRecipientType, ropts.OriginalRecipient = smtp.DSNAddressType(strings.ToUpper(t)), a
			}
		}
		if err := cl.Rcpt(r.Address, ropts); err != nil {
			out[k] = smtpResult(host, "RCPT", err)
			out[k].host, out[k].tls, out[k].transport = host, mode, t.Name
			if isConnError(err) {
				return all(out[k]), true, false
			}
			continue
		}
		out[k].reply = "accepted"
		accepted++
	}
	if accepted == 0 {
		cl.Quit()
		return out, false, false
	}
	w, err := cl.Data()
	if err != nil {
		return d.dataFailed(out, host, mode, err), false, false
	}
	f, err := d.cfg.Queue.Data(m.ID)
	if err != nil {
		w.Close()
		return d.dataFailed(out, host, mode, fmt.Errorf("reading the queued data: %w", err)), false, false
	}
	_, err = io.Copy(w, f)
	f.Close()
	var resp *smtp.DataResponse
	if err == nil {
		resp, err = w.CloseWithResponse()
	}
	if err != nil {
		return d.dataFailed(out, host, mode, err), false, false
	}
	for k := range out {
		if out[k].reply == "accepted" {
			out[k] = result{reply: "250 " + resp.StatusText, host: host, tls: mode, transport: t.Name}
		}
	}
	cl.Quit()
	return out, false, false
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

func (d *Deliverer) dataFailed(out []result, host, mode string, err error) []result {
	r := smtpResult(host, "DATA", err)
	r.host, r.tls = host, mode
	for k := range out {
		if out[k].reply == "accepted" {
			out[k] = r
		}
	}
	return out
}

// smtpResult classifies an error from the go-smtp client: 5xx replies are
// permanent, anything else temporary.
func smtpResult(host, step string, err error) result {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		ec := ""
		if se.EnhancedCode != smtp.NoEnhancedCode && se.EnhancedCode != (smtp.EnhancedCode{}) {
			ec = fmt.Sprintf("%d.%d.%d ", se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2])
		}
		e := fmt.Errorf("%s%s said at %s: %d %s", ec, host, step, se.Code, se.Message)
		return result{err: e, permanent: se.Code >= 500}
	}
	return tempFail("4.4.2 %s at %s: %v", host, step, err)
}

func isConnError(err error) bool {
	var se *smtp.SMTPError
	return !errors.As(err, &se)
}

// readReply reads one SMTP reply (all its lines).
func readReply(br *bufio.Reader) (int, string, error) {
	var text []string
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return 0, "", err
		}
		line = strings.TrimRight(line, "\r\n")
		if len(line) < 3 {
			return 0, "", fmt.Errorf("malformed reply %q", line)
		}
		var code int
		if _, err := fmt.Sscanf(line[:3], "%d", &code); err != nil {
			return 0, "", fmt.Errorf("malformed reply %q", line)
		}
		if len(line) > 4 {
			text = append(text, line[4:])
		}
		if len(line) == 3 || line[3] != '-' {
			return code, strings.Join(text, "\n"), nil
		}
		if len(text) > 100 {
			return 0, "", errors.New("reply too long")
		}
	}
}

func hasExtension(ehlo, ext string) bool {
	for _, l := range strings.Split(ehlo, "\n") {
		if f := strings.Fields(l); len(f) > 0 && strings.EqualFold(f[0], ext) {
			return true
		}
	}
	return false
}

// replayConn reads from r (a replayed greeting, then the connection).
type replayConn struct {
	net.Conn
	r io.Reader
}

func (c *replayConn) Read(p []byte) (int, error) { return c.r.Read(p) }
