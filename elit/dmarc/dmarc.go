// Package dmarc evaluates the DMARC policy of a message's author domain
// (RFC 7489): the record at _dmarc.<From domain> or at its
// organizational domain (§6.6.3, found with the Public Suffix List,
// §3.2), whether SPF or DKIM authenticated an identifier aligned with the
// From domain (§3.1, §4.2), and the policy that applies to a message
// that fails: p=, sp= for subdomains, sampled by pct= (§6.6.4).
//
// No record gives none, never an error. A temporary DNS failure
// ([dns.ErrTemporary]) gives temperror, for the server to answer 451; so
// does an aligned identifier whose check failed temporarily (SPF or DKIM
// temperror) when no other aligned one passed, since a later attempt may
// pass. A record that breaks the grammar of §6.4 gives permerror and no
// policy (§11.2), as do several records at one name (§6.6.3 step 5
// applies no DMARC then; permerror rather than none shows the
// publishing error), but for a record without a valid p= that names a
// rua= URI, taken as p=none (§6.6.3 step 6).
package dmarc

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"

	"golang.org/x/net/idna"

	"elit.local/elit/dns"
	"elit.local/elit/spf"
)

// Verdict is a DMARC result as Authentication-Results writes it (RFC
// 7489 §11.2, RFC 8601 §2.7).
type Verdict string

// DMARC results.
const (
	None      Verdict = "none"      // no DMARC record
	Pass      Verdict = "pass"      // an aligned identifier passed
	Fail      Verdict = "fail"      // none did: the policy applies
	TempError Verdict = "temperror" // a DNS failure: try again later
	PermError Verdict = "permerror" // the record cannot be used
)

// Found is what Lookup found.
type Found struct {
	Domain string // the From domain asked about, lower case A-labels
	Org    string // its organizational domain (§3.2)
	// RecordDomain is where the record was: Domain or Org; "" without
	// a record.
	RecordDomain string
	Text         string  // the record's text
	Record       *Record // nil without a record
}

// Lookup finds the DMARC record for mail from fromDomain (§6.6.3): at
// _dmarc.<fromDomain>, else at _dmarc.<organizational domain>, keeping
// only TXT records that begin with v=DMARC1. Without a record Found's
// Record is nil and the error nil. An error wrapping dns.ErrTemporary is
// a DNS failure (temperror); any other (several records, a syntax
// error) is a permerror.
func Lookup(ctx context.Context, r dns.Resolver, fromDomain string) (Found, error) {
	domain, err := idna.ToASCII(normalize(fromDomain))
	if err != nil || domain == "" {
		return Found{Domain: normalize(fromDomain)}, nil // no domain, no record
	}
	f := Found{Domain: domain, Org: OrgDomain(domain)}
	names := []string{f.Domain}
	if f.Org != f.Domain {
		names = append(names, f.Org) // §6.6.3 step 3
	}
	for _, at := range names {
		txts, err := r.LookupTXT(ctx, "_dmarc."+at)
		if err != nil && !errors.Is(err, dns.ErrNotFound) {
			return f, fmt.Errorf("dmarc: record of %s: %w", at, temporary(err))
		}
		var records []string
		for _, t := range txts {
			if hasVersion(t) {
				records = append(records, t)
			}
		}
		switch len(records) {
		case 0:
			continue
		case 1:
		default:
			return f, fmt.Errorf("dmarc: %s has %d DMARC records (§6.6.3)", at, len(records))
		}
		f.RecordDomain, f.Text = at, records[0]
		rec, err := Parse(records[0])
		if err != nil {
			return f, fmt.Errorf("dmarc: record of %s: %w", at, err)
		}
		f.Record = rec
		return f, nil
	}
	return f, nil
}

// temporary makes a lookup failure other than NXDOMAIN temporary.
func temporary(err error) error {
	if errors.Is(err, dns.ErrTemporary) {
		return err
	}
	return fmt.Errorf("%w: %w", dns.ErrTemporary, err)
}

// DKIM is the verdict of one DKIM signature.
type DKIM struct {
	Domain string // its d=
	// Result is as Authentication-Results writes it (RFC 8601 §2.7.1):
	// "pass" authenticates Domain; "temperror" may make DMARC
	// temperror.
	Result string
}

// Input is what DMARC evaluates.
type Input struct {
	From string // the RFC5322.From domain (§3.1)
	// SPF is the result of the MAIL FROM check and SPFDomain the domain
	// it checked (spf.Result.Domain: the MAIL FROM domain, or the HELO
	// for the null sender).
	SPF       spf.Verdict
	SPFDomain string
	DKIM      []DKIM
	// Rand returns a number in [0, n) to sample pct= (§6.6.4); nil is
	// math/rand/v2.IntN.
	Rand func(n int) int
}

// Result is the outcome of Evaluate.
type Result struct {
	Result Verdict
	// Policy is what to do with the message (§6.6.4): none unless
	// Result is fail; then Requested, or the next less strict when
	// pct= left the message out of the sample (reject → quarantine →
	// none).
	Policy Policy
	// Requested is what the record asks for mail from From: p=, or sp=
	// when the record is the organizational domain's and From is below
	// it (§6.3); "" without a record.
	Requested Policy
	Sampled   bool // pct= selected the message (always at pct=100)
	Found          // the record and where it was
	// AlignedSPF and AlignedDKIM say which passing identifiers were
	// aligned with From under aspf= and adkim= (§3.1); DKIMDomain is
	// the d= of the first aligned passing signature.
	AlignedSPF, AlignedDKIM bool
	DKIMDomain              string
	Err                     error // why temperror or permerror
}

// Evaluate looks up the DMARC record for in.From and evaluates the
// message against it (§6.6.2, §6.6.4). The result is fail only when no
// aligned identifier passed; when one of them failed temporarily (an
// aligned SPF or DKIM temperror), it is temperror instead, as a later
// attempt may pass.
func Evaluate(ctx context.Context, r dns.Resolver, in Input) Result {
	f, err := Lookup(ctx, r, in.From)
	res := Result{Found: f, Policy: PolicyNone, Err: err}
	switch {
	case errors.Is(err, dns.ErrTemporary):
		res.Result = TempError
		return res
	case err != nil:
		res.Result = PermError
		return res
	case f.Record == nil:
		res.Result = None
		return res
	}
	rec := f.Record
	res.Requested = rec.Policy
	if f.RecordDomain == f.Org && f.Domain != f.Org && rec.SubdomainPolicy != "" {
		res.Requested = rec.SubdomainPolicy
	}
	spfDomain := normalize(in.SPFDomain)
	if a, err := idna.ToASCII(spfDomain); err == nil {
		spfDomain = a
	}
	spfAligned := aligned(f.Domain, spfDomain, rec.ASPF)
	res.AlignedSPF = in.SPF == spf.Pass && spfAligned
	temp := in.SPF == spf.TempError && spfAligned
	for _, d := range in.DKIM {
		domain := normalize(d.Domain)
		if a, err := idna.ToASCII(domain); err == nil {
			domain = a
		}
		if !aligned(f.Domain, domain, rec.ADKIM) {
			continue
		}
		switch strings.ToLower(d.Result) {
		case "pass":
			if !res.AlignedDKIM {
				res.AlignedDKIM, res.DKIMDomain = true, domain
			}
		case "temperror":
			temp = true
		}
	}
	switch {
	case res.AlignedSPF || res.AlignedDKIM:
		res.Result = Pass
		res.Sampled = true
	case temp:
		res.Result = TempError
		res.Err = errors.New("dmarc: an aligned identifier failed temporarily")
	default:
		res.Result = Fail
		intn := in.Rand
		if intn == nil {
			intn = rand.IntN
		}
		res.Sampled = rec.Percent >= 100 || intn(100) < rec.Percent
		res.Policy = res.Requested
		if !res.Sampled {
			res.Policy = map[Policy]Policy{Reject: Quarantine, Quarantine: PolicyNone, PolicyNone: PolicyNone}[res.Requested]
		}
	}
	return res
}

// aligned reports whether an authenticated domain is aligned with the
// From domain (§3.1.1, §3.1.2): the same name in strict mode, the same
// organizational domain in relaxed mode.
func aligned(from, domain string, mode Alignment) bool {
	if domain == "" {
		return false
	}
	if mode == Strict {
		return from == domain
	}
	return OrgDomain(from) == OrgDomain(domain)
}
