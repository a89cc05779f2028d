// Package mailauth is the decide step of mail authentication (elit/decide):
// on the MX it checks what arrives — SPF (RFC 7208) for the MAIL FROM and
// HELO identities, iprev (RFC 8601 §3), every DKIM signature (RFC 6376),
// the ARC chain (RFC 8617) and DMARC (RFC 7489) — writes the verdicts in
// an Authentication-Results field (RFC 8601) above our Received field,
// refuses what the From domain's DMARC policy rejects and marks what it
// quarantines; when the message goes on to mailboxes elsewhere it seals it
// (ARC) and signs it as our domain (DKIM), so that the forward keeps its
// authentication. On submission it signs our users' mail with their
// domain's keys (Keys). Everything is decided once, at acceptance; nothing
// is signed again at a retry.
package mailauth

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/mail"
	"strings"
	"sync"
	"time"

	"elit.local/elit/arc"
	"elit.local/elit/authres"
	"elit.local/elit/decide"
	"elit.local/elit/dkim"
	"elit.local/elit/dmarc"
	"elit.local/elit/dns"
	"elit.local/elit/iprev"
	"elit.local/elit/mailaddr"
	"elit.local/elit/metrics"
	"elit.local/elit/reply"
	"elit.local/elit/spf"
)

var (
	dmarcTotal   = metrics.Default.NewCounterVec("elit_dmarc_results_total", "DMARC verdicts on received mail, by result and policy applied.", "result")
	signedTotal  = metrics.Default.NewCounterVec("elit_dkim_signed_total", "Messages signed, by what (submission, forward, notice).", "what")
	refusedTotal = metrics.Default.NewCounterVec("elit_mailauth_refused_total", "Messages refused or deferred by mail authentication, by reason.", "reason")
)

// Step checks, seals and signs. The zero values of the switches are off;
// config turns them on by default.
type Step struct {
	decide.Nop
	Resolver dns.Resolver
	Keys     *Keys
	// AuthServID names us in Authentication-Results (RFC 8601 §2.5): the
	// host name.
	AuthServID string
	// Domain is our primary domain: what the MX forwards is signed and
	// sealed as it.
	Domain string
	// Local reports whether a domain is one of ours: mail for it is not
	// forwarded.
	Local func(domain string) bool
	// Check verifies received mail (MX); Reject applies DMARC p=reject
	// with a 550 (else such mail is marked like p=quarantine); Seal
	// ARC-seals what the MX forwards; Sign DKIM-signs submitted mail,
	// notices and forwards.
	Check, Reject, Seal, Sign bool
	Now                       func() time.Time
	Log                       *slog.Logger
	// rand samples DMARC pct= (tests fix it).
	rand func(int) int
}

func (s *Step) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *Step) log() *slog.Logger {
	if s.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Log
}

// Data runs at the end of DATA.
func (s *Step) Data(ctx context.Context, t *decide.Transaction, m *decide.Message) error {
	if len(t.Recipients) == 0 {
		return nil // nothing will be queued (a bounce a step consumed)
	}
	if t.Session.User != "" {
		if !s.Sign {
			return nil
		}
		return s.sign(t, m)
	}
	var fields []string
	var ar *authres.Header
	var chain arc.Status
	if s.Check {
		v, err := s.check(ctx, t, m)
		if err != nil {
			return err
		}
		ar, chain = v.header, v.arc
		fields = append(fields, v.marks...)
	}
	if (s.Seal || s.Sign) && s.forwards(t) {
		sealed, err := s.seal(t, m, ar, chain)
		if err != nil {
			// Unsealed and unsigned, the forward still goes: it is what
			// a forward was before ARC.
			s.log().Error("cannot seal and sign a forward", "err", err)
		}
		fields = append(sealed, fields...)
	}
	if ar != nil {
		fields = append(fields, ar.Field())
	}
	t.Fields = append(fields, t.Fields...)
	return nil
}

// forwards reports whether some recipient is elsewhere.
func (s *Step) forwards(t *decide.Transaction) bool {
	for _, r := range t.Recipients {
		d := r.Address[strings.LastIndexByte(r.Address, '@')+1:]
		if s.Local == nil || !s.Local(d) {
			return true
		}
	}
	return false
}

// sign signs a submitted message with the keys of its From domain when we
// have some, else with our primary domain's.
func (s *Step) sign(t *decide.Transaction, m *decide.Message) error {
	domain := fromDomain(m)
	if domain == "" || len(s.Keys.For(domain)) == 0 {
		domain = s.Domain
	}
	sigs, err := s.dkimSign(domain, m.Open())
	if err != nil {
		s.log().Error("cannot sign", "domain", domain, "err", err)
		return reply.New(451, reply.Enhanced{4, 3, 0}, "Cannot sign the message now, try again later")
	}
	if len(sigs) > 0 {
		signedTotal.Inc("submission")
	}
	t.Fields = append(sigs, t.Fields...)
	return nil
}

// dkimSign signs msg with every key of domain (none: no signature).
func (s *Step) dkimSign(domain string, msg io.Reader) ([]string, error) {
	if s.Keys == nil {
		return nil, nil
	}
	signers := s.Keys.Signers(domain, s.now)
	if len(signers) == 0 {
		return nil, nil
	}
	return dkim.Sign(msg, signers...)
}

// SignNotice signs a message Elit writes itself (a DSN) as our primary
// domain, for deliver.Config.Sign: its From is MAILER-DAEMON at our host
// name, aligned with the domain in DMARC's relaxed mode.
func (s *Step) SignNotice(msg []byte) (string, error) {
	if !s.Sign {
		return "", nil
	}
	sigs, err := s.dkimSign(s.Domain, bytes.NewReader(msg))
	if err != nil || len(sigs) == 0 {
		return "", err
	}
	signedTotal.Inc("notice")
	return strings.Join(sigs, ""), nil
}

// verdicts are the checks' results.
type verdicts struct {
	header *authres.Header
	arc    arc.Status
	marks  []string // fields that mark the message (quarantine)
}

// check runs the checks and decides.
func (s *Step) check(ctx context.Context, t *decide.Transaction, m *decide.Message) (verdicts, error) {
	log := s.log().With("client", t.Session.Client.String())
	// Authentication-Results that claim to be ours came from outside:
	// they go (RFC 8601 §5).
	var hf []authres.Field
	for _, f := range m.Header {
		hf = append(hf, authres.Field{Name: f.Name, Value: f.Value})
	}
	for _, i := range authres.Ours(hf, s.AuthServID) {
		log.Info("removing a forged Authentication-Results field", "value", m.Header[i].Value)
		t.RemoveField(i)
	}

	ip, helo := t.Session.Client, t.Session.Helo
	var (
		wg               sync.WaitGroup
		spfMail, spfHelo spf.Result
		rev              iprev.Result
		sigs             []dkim.Result
		dkimErr, arcErr  error
		chain            arc.Result
	)
	// Each check's lookups are traced: its result says "dnssec" when
	// every answer it used was authenticated (issue 13).
	heloCtx, heloTrace := dns.WithTrace(ctx)
	mailCtx, mailTrace := dns.WithTrace(ctx)
	revCtx, revTrace := dns.WithTrace(ctx)
	dkimCtx, dkimTrace := dns.WithTrace(ctx)
	wg.Add(4)
	go func() {
		defer wg.Done()
		spfHelo = spf.CheckHelo(heloCtx, s.Resolver, ip, helo, spf.WithReceiver(s.AuthServID))
		spfMail = spf.Check(mailCtx, s.Resolver, ip, helo, t.From, spf.WithReceiver(s.AuthServID))
	}()
	go func() { defer wg.Done(); rev = iprev.Check(revCtx, s.Resolver, ip) }()
	go func() {
		defer wg.Done()
		v := &dkim.Verifier{Resolver: s.Resolver, Now: s.Now}
		sigs, dkimErr = v.Verify(dkimCtx, m.Open())
	}()
	go func() {
		defer wg.Done()
		v := &arc.Verifier{Resolver: s.Resolver}
		chain, arcErr = v.Verify(ctx, m.Open())
	}()
	wg.Wait()
	if dkimErr != nil {
		log.Info("dkim: cannot read the message", "err", dkimErr)
	}
	if arcErr != nil {
		log.Info("arc: cannot read the message", "err", arcErr)
	}

	if rev.Result == iprev.Pass && len(rev.Confirmed) > 0 {
		t.ClientName, t.ClientNameSecure = rev.Confirmed[0], revTrace.Secure()
	}
	h := &authres.Header{AuthServID: s.AuthServID}
	h.Results = append(h.Results, dnssec(iprevResult(rev), revTrace), dnssec(spfResult(spfMail, "mailfrom"), mailTrace),
		dnssec(spfResult(spfHelo, "helo"), heloTrace))
	var dk []dmarc.DKIM
	for _, r := range sigs {
		h.Results = append(h.Results, dnssec(dkimResult(r), dkimTrace))
		dk = append(dk, dmarc.DKIM{Domain: r.Domain, Result: string(r.Status)})
	}
	if dkimErr == nil && len(sigs) == 0 {
		h.Results = append(h.Results, authres.Result{Method: "dkim", Result: "none"})
	}
	h.Results = append(h.Results, arcResult(chain, arcErr))

	v := verdicts{header: h, arc: chain.Status}
	from := fromDomain(m)
	if from == "" {
		h.Results = append(h.Results, authres.Result{Method: "dmarc", Result: "permerror", Reason: "not exactly one From address"})
		dmarcTotal.Inc("permerror")
		return v, nil
	}
	dmarcCtx, dmarcTrace := dns.WithTrace(ctx)
	dm := dmarc.Evaluate(dmarcCtx, s.Resolver, dmarc.Input{From: from, SPF: spfMail.Result, SPFDomain: spfMail.Domain, DKIM: dk, Rand: s.rand})
	h.Results = append(h.Results, dnssec(dmarcResult(dm, from), dmarcTrace))
	dmarcTotal.Inc(string(dm.Result))
	switch {
	case dm.Result == dmarc.TempError:
		log.Info("message deferred: dmarc temperror", "from", from, "err", dm.Err)
		refusedTotal.Inc("dmarc-temperror")
		return v, reply.New(451, reply.Enhanced{4, 7, 0}, "DMARC check of %s failed temporarily (DNS), try again later", from)
	case dm.Result != dmarc.Fail:
	case dm.Policy == dmarc.Reject && s.Reject:
		log.Warn("message refused: dmarc policy", "from", from, "policy", dm.Policy)
		refusedTotal.Inc("dmarc-reject")
		return v, reply.New(550, reply.Enhanced{5, 7, 1}, "Message refused: the DMARC policy of %s rejects mail that fails its authentication (RFC 7489)", from)
	case dm.Policy == dmarc.Reject || dm.Policy == dmarc.Quarantine:
		log.Info("message marked: dmarc policy", "from", from, "policy", dm.Policy)
		v.marks = append(v.marks, "X-Spam-Flag: YES\r\n",
			fmt.Sprintf("X-Spam-Status: Yes, dmarc=fail policy=%s header.from=%s\r\n", dm.Policy, from))
	}
	return v, nil
}

// seal adds the ARC set of this hop and our DKIM signatures to a message
// the MX forwards.
func (s *Step) seal(t *decide.Transaction, m *decide.Message, ar *authres.Header, chain arc.Status) ([]string, error) {
	var out []string
	if key, ok := s.sealKey(); ok && ar != nil && s.Seal {
		// The seal signs the message as it leaves us: with our
		// Authentication-Results on top.
		msg := io.MultiReader(strings.NewReader(ar.Field()), m.Open())
		sealer := &arc.Sealer{Domain: key.Domain, Selector: key.Selector, Key: key.Signer, Now: s.Now}
		// A broken chain is sealed with cv=fail (RFC 8617 §5.1.2); one
		// that a seal already says failed gets no more sets.
		sealed, err := sealer.Seal(msg, s.AuthServID, ar.Value(), chain)
		switch {
		case errors.Is(err, arc.ErrChainFailed):
		case err != nil:
			return nil, fmt.Errorf("arc: %w", err)
		default:
			out = append(out, sealed.Seal, sealed.MessageSignature, sealed.AuthenticationResults)
		}
	}
	// One DKIM signature as our domain: an ed25519 one when we have the
	// key (a twentieth of the CPU of rsa-2048), else rsa. The author's
	// own signature, if any, is what DMARC will align at the destination;
	// ours vouches for the forward.
	var signers []*dkim.Signer
	if s.Keys == nil || !s.Sign {
		return out, nil
	}
	for _, sg := range s.Keys.Signers(s.Domain, s.now) {
		if _, ed := sg.Key.(ed25519.PrivateKey); ed || len(signers) == 0 {
			signers = []*dkim.Signer{sg}
		}
		if _, ed := sg.Key.(ed25519.PrivateKey); ed {
			break
		}
	}
	if len(signers) == 0 {
		return out, nil
	}
	sigs, err := dkim.Sign(m.Open(), signers...)
	if err != nil {
		return out, fmt.Errorf("dkim: %w", err)
	}
	signedTotal.Inc("forward")
	return append(sigs, out...), nil
}

// sealKey is the key that seals: ARC knows only rsa-sha256 (RFC 8617
// §4.1.3 refers to DKIM's algorithms; ed25519 verifiers are rare).
func (s *Step) sealKey() (Key, bool) {
	if s.Keys == nil {
		return Key{}, false
	}
	for _, k := range s.Keys.For(s.Domain) {
		if k.Algorithm == "rsa-sha256" {
			return k, true
		}
	}
	return Key{}, false
}

// fromDomain is the domain of the one address of the one From field, or
// "".
func fromDomain(m *decide.Message) string {
	from := m.Values("From")
	if len(from) != 1 || from[0].Long {
		return ""
	}
	list, err := mail.ParseAddressList(strings.TrimSpace(from[0].Value))
	if err != nil || len(list) != 1 {
		return ""
	}
	a, err := mailaddr.Parse(list[0].Address)
	if err != nil {
		return ""
	}
	return a.Domain
}

// The verdicts as Authentication-Results resinfos (RFC 8601 §2.7, RFC
// 7489 §11.2, RFC 8617 §4.1.1, RFC 6008 for header.b).

// dnssec adds "dnssec" to the comment of res when every DNS answer its
// check used was authenticated by DNSSEC (RFC 4033 §2; the resolver
// trusted, as for DANE), so that the reader knows the verdict rests on
// signed data; RFC 8601 has no property for it, hence a comment.
func dnssec(res authres.Result, t *dns.Trace) authres.Result {
	if t.Secure() {
		res.Comment = strings.TrimSpace(res.Comment + " dnssec")
	}
	return res
}

func iprevResult(r iprev.Result) authres.Result {
	res := authres.Result{Method: "iprev", Result: string(r.Result),
		Properties: []authres.Property{authres.Prop(authres.Policy, "iprev", r.IP.String())}}
	if len(r.Confirmed) > 0 {
		res.Comment = r.Confirmed[0]
	}
	return res
}

func spfResult(r spf.Result, identity string) authres.Result {
	res := authres.Result{Method: "spf", Result: string(r.Result)}
	value := r.Sender
	if identity == "helo" {
		value = strings.TrimPrefix(r.Sender, "postmaster@")
	}
	if value != "" {
		res.Properties = []authres.Property{authres.Prop(authres.SMTP, identity, value)}
	}
	if r.Err != nil && (r.Result == spf.TempError || r.Result == spf.PermError) {
		res.Reason = r.Err.Error()
	}
	return res
}

func dkimResult(r dkim.Result) authres.Result {
	res := authres.Result{Method: "dkim", Result: string(r.Status)}
	if r.Err != nil && r.Status != dkim.Pass {
		res.Reason = r.Err.Error()
	}
	if r.Domain != "" {
		res.Properties = append(res.Properties, authres.Prop(authres.Head, "d", r.Domain))
	}
	if r.Identity != "" {
		res.Properties = append(res.Properties, authres.Prop(authres.Head, "i", r.Identity))
	}
	if r.Selector != "" {
		res.Properties = append(res.Properties, authres.Prop(authres.Head, "s", r.Selector))
	}
	if r.Algorithm != "" {
		res.Properties = append(res.Properties, authres.Prop(authres.Head, "a", r.Algorithm))
	}
	if r.HeaderB != "" {
		res.Properties = append(res.Properties, authres.Prop(authres.Head, "b", r.HeaderB))
	}
	return res
}

func arcResult(r arc.Result, err error) authres.Result {
	res := authres.Result{Method: "arc", Result: string(r.Status)}
	switch {
	case err != nil:
		res.Result, res.Reason = "permerror", err.Error()
	case r.TempFail:
		res.Result, res.Reason = "temperror", r.Err.Error()
	case r.Err != nil:
		res.Reason = r.Err.Error()
	}
	if res.Result == "" {
		res.Result = "none"
	}
	if r.Sets > 0 && r.Status == arc.Pass && len(r.Seals) > 0 {
		last := r.Seals[len(r.Seals)-1]
		res.Comment = fmt.Sprintf("i=%d %s", r.Sets, last.Domain)
	}
	return res
}

func dmarcResult(r dmarc.Result, from string) authres.Result {
	res := authres.Result{Method: "dmarc", Result: string(r.Result),
		Properties: []authres.Property{authres.Prop(authres.Head, "from", from)}}
	if r.Requested != "" {
		res.Comment = "p=" + string(r.Requested)
		if r.Policy != r.Requested {
			res.Comment += " applied=" + string(r.Policy)
		}
	}
	if r.Err != nil && r.Result != dmarc.Pass {
		res.Reason = r.Err.Error()
	}
	return res
}
