package deliver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/emersion/go-smtp"

	"elit.local/elit/auth"
	"elit.local/elit/dns"
	"elit.local/elit/mailaddr"
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
	// From here every step's deadline comes from dl, which keeps it in
	// the past once ctx is done (shutdown): the session ends at once.
	dl := watchDeadline(ctx, conn, d.cfg.Timeout)
	defer dl.stop()
	roots := d.cfg.RootCAs
	if t.roots != nil {
		roots = t.roots
	}
	tlsConfig := &tls.Config{ServerName: host, RootCAs: roots, MinVersion: tls.VersionTLS12}

	actual := tlsNone
	if t.Type == "submission" && t.TLS == "implicit" {
		tc := tls.Client(conn, tlsConfig)
		dl.extend()
		if err := tc.HandshakeContext(ctx); err != nil {
			return all(tempFail("4.7.5 %s: TLS: %v", host, err)), true, false
		}
		conn, actual = tc, tlsVerified
	}
	c := newClient(conn, dl)
	if err := c.greeting(); err != nil {
		return all(smtpResult(host, "the greeting", err)), true, false
	}
	if err := c.ehlo(d.cfg.Hostname); err != nil {
		return all(smtpResult(host, "EHLO", err)), true, false
	}
	if actual == tlsNone && c.has("STARTTLS") && mode != tlsNone {
		c.send("STARTTLS")
		if err := c.flush(); err != nil {
			return all(tempFail("4.4.2 %s: %v", host, err)), true, false
		}
		if _, err := c.reply(220); err != nil {
			return all(tempFail("4.7.0 %s: STARTTLS: %v", host, err)), true, true
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
		actual = mode
		// RFC 3207 §4.2: forget what was said before TLS, EHLO again.
		c = newClient(tc, dl)
		if err := c.ehlo(d.cfg.Hostname); err != nil {
			return all(smtpResult(host, "EHLO", err)), true, false
		}
	}
	if t.Type == "submission" {
		if actual != tlsVerified {
			return all(tempFail("4.7.10 %s offers no STARTTLS: not sending the password in the clear", host)), false, false
		}
		if r := d.authenticate(c, t, host); r != nil {
			return all(*r), false, false
		}
	}
	defer c.quit()
	return d.send(c, from, t, host, actual, m, idx)
}

// authenticate logs in to a submission relay with the configured
// mechanism or the strongest offered. A failure is temporary: the
// operator can fix the password while the mail waits.
func (d *Deliverer) authenticate(c *client, t *Transport, host string) *result {
	if t.User == "" {
		return nil
	}
	mechs := strings.Fields(strings.ToUpper(c.ext["AUTH"]))
	mech := ""
	for _, m := range auth.ClientMechanisms {
		if (t.Mechanism == "" || strings.EqualFold(t.Mechanism, m)) && slices.Contains(mechs, m) {
			mech = m
			break
		}
	}
	if mech == "" {
		r := tempFail("4.7.0 %s offers AUTH %q, none we can use", host, c.ext["AUTH"])
		return &r
	}
	sc, _ := auth.NewClient(mech, t.User, t.Password)
	if err := c.auth(sc); err != nil {
		r := tempFail("4.7.0 %s: AUTH %s as %s: %v", host, mech, t.User, err)
		return &r
	}
	d.cfg.Log.Debug("authenticated to the relay", "host", host, "mechanism", mech)
	return nil
}

// send runs one transaction for the recipients idx on an open session.
func (d *Deliverer) send(c *client, from string, t *Transport, host, mode string, m *queue.Message, idx []int) ([]result, bool, bool) {
	out := make([]result, len(idx))
	all := func(r result) []result {
		r.host, r.tls, r.transport = host, mode, t.Name
		for i := range out {
			out[i] = r
		}
		return out
	}
	if v, ok := c.ext["SIZE"]; ok {
		if max, err := strconv.ParseInt(v, 10, 64); err == nil && max > 0 && m.Size > max {
			return all(permFail("5.3.4 %s accepts at most %d bytes, the message has %d", host, max, m.Size)), false, false
		}
	}
	if m.SMTPUTF8 && !c.has("SMTPUTF8") {
		return all(permFail("5.6.7 %s does not support SMTPUTF8, which the message needs", host)), false, false
	}
	env := envelope{from: from}
	if c.has("SIZE") {
		env.mailArgs += fmt.Sprintf(" SIZE=%d", m.Size)
	}
	if c.has("8BITMIME") {
		if m.Body == "8BITMIME" || m.Body == "" {
			env.mailArgs += " BODY=8BITMIME"
		}
	} else if m.Body != "7BIT" {
		// RFC 6152 §3: convert or return. We return, and only messages
		// that really have 8-bit bytes.
		if eight, err := d.has8bit(m.ID); err != nil || eight {
			return all(permFail("5.6.3 %s does not support 8BITMIME and the message has 8-bit data", host)), false, false
		}
	}
	if m.SMTPUTF8 {
		env.mailArgs += " SMTPUTF8"
	}
	// UTF-8 in the envelope only with SMTPUTF8, which the check above
	// makes sure the server has when the message asks for it.
	smtputf8 := m.SMTPUTF8 && c.has("SMTPUTF8")
	env.from = wireAddress(from, smtputf8)
	dsn := c.has("DSN")
	if dsn {
		if m.Ret != "" {
			env.mailArgs += " RET=" + m.Ret
		}
		if m.EnvID != "" {
			env.mailArgs += " ENVID=" + xtext(m.EnvID)
		}
	}
	for _, i := range idx {
		r := m.Recipients[i]
		args := ""
		if dsn && r.Notify != "" {
			args += " NOTIFY=" + r.Notify
		}
		if dsn && r.ORcpt != "" {
			if p, ok := orcptParam(r.ORcpt, smtputf8); ok {
				args += " ORCPT=" + p
			} else {
				d.cfg.Log.Info("ORCPT left out: not an address", "id", m.ID, "to", r.Address, "orcpt", r.ORcpt)
			}
		}
		env.rcpts = append(env.rcpts, wireAddress(r.Address, smtputf8))
		env.rcptArgs = append(env.rcptArgs, args)
	}
	f, err := d.cfg.Queue.Data(m.ID)
	if err != nil {
		return all(tempFail("4.3.0 reading the queued data: %v", err)), false, false
	}
	defer f.Close()
	mailErr, rcptErrs, reply, dataErr := c.transaction(env, f, m.Size)
	if mailErr != nil {
		r := smtpResult(host, "MAIL", mailErr)
		return all(r), isConnError(mailErr) && !r.permanent, false
	}
	for k := range idx {
		switch {
		case rcptErrs[k] != nil:
			out[k] = smtpResult(host, "RCPT", rcptErrs[k])
		case dataErr != nil:
			out[k] = smtpResult(host, "DATA", dataErr)
		default:
			notify := strings.ToUpper(m.Recipients[idx[k]].Notify)
			out[k] = result{reply: "250 " + strings.ReplaceAll(reply, "\n", " "), relayed: !dsn && strings.Contains(notify, "SUCCESS")}
		}
		out[k].host, out[k].tls, out[k].transport = host, mode, t.Name
	}
	return out, false, false
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

// isConnError reports an error that is not an SMTP reply: the session is
// gone.
func isConnError(err error) bool {
	var se *smtp.SMTPError
	return err != nil && !errors.As(err, &se)
}
