// Package tlspolicy is the TLS policy of Elit's outbound mail, the
// deliverer's TLSPolicy: DANE (RFC 7672) where the destination publishes
// DNSSEC-signed TLSA records for its MX host, else MTA-STS (RFC 8461)
// where it publishes a policy, else opportunistic TLS. DANE comes first:
// RFC 8461 §2 says a sender that supports DANE must not let MTA-STS
// override a failing DANE check. Relays (smarthost, submission) get the
// opportunistic plan (RFC 8461 §3.4 leaves them out), which requires
// verified TLS for a relay that gets our password.
package tlspolicy

import (
	"context"
	"crypto/tls"
	"errors"
	"time"

	"elit.local/elit/dane"
	"elit.local/elit/deliver"
	"elit.local/elit/dns"
	"elit.local/elit/mtasts"
)

// Chain is DANE, then MTA-STS, then opportunistic TLS.
type Chain struct {
	// DANE is the resolver of TLSA lookups: it must tell secure answers
	// (a trusted validating resolver, elit/dns); nil turns DANE off.
	DANE dns.Resolver
	// STS gives the MTA-STS policy of a domain ((*mtasts.Cache).Policy);
	// nil turns MTA-STS off.
	STS func(ctx context.Context, domain string) mtasts.Result
	// Now is the clock of certificate checks (nil: time.Now).
	Now func() time.Time
}

func (c *Chain) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// TLSPlan implements deliver.TLSPolicy.
func (c *Chain) TLSPlan(ctx context.Context, d deliver.TLSDestination) (deliver.TLSPlan, error) {
	base, err := deliver.Opportunistic{}.TLSPlan(ctx, d)
	if d.Transport != "direct" || err != nil {
		return base, err
	}
	if c.DANE != nil && validating(c.DANE) {
		plan, applies, err := c.dane(ctx, d)
		if err != nil || applies {
			return plan, err
		}
	}
	if c.STS != nil {
		return c.sts(ctx, d, base)
	}
	return base, nil
}

// validating reports whether r can tell secure answers: a dns.Client
// asking a resolver it trusts to validate. Without one DANE cannot apply,
// and its lookups are not made.
func validating(r dns.Resolver) bool {
	v, ok := r.(interface{ Validating() bool })
	return !ok || v.Validating()
}

// dane is the plan DANE gives, and whether it applies.
func (c *Chain) dane(ctx context.Context, d deliver.TLSDestination) (deliver.TLSPlan, bool, error) {
	pol, err := dane.Lookup(ctx, c.DANE, d.Domain, d.Host)
	if err != nil {
		// RFC 7672 §2.1.1: not knowing whether DANE applies is no reason
		// to send without it; the host is skipped for now.
		typ := "tlsa-invalid"
		if errors.Is(err, dns.ErrBogus) {
			typ = "dnssec-invalid"
		}
		return deliver.TLSPlan{Policy: "tlsa"}, true, &deliver.TLSPolicyError{ResultType: typ, Err: err}
	}
	strs := make([]string, len(pol.Records))
	for i, r := range pol.Records {
		strs[i] = r.String()
	}
	plan := deliver.TLSPlan{Policy: "tlsa", PolicyDomain: pol.Base, PolicyStrings: strs}
	switch pol.Mode {
	case dane.ModeNone:
		return deliver.TLSPlan{}, false, nil
	case dane.ModeEncrypt:
		// TLSA records, none usable: encrypted but not authenticated
		// (RFC 7672 §2.2: still no plaintext).
		plan.Requirements = []deliver.TLSRequirement{{Mode: deliver.TLSUnverified, Required: true}}
	case dane.ModeVerify:
		verify := pol.VerifyConnection(c.now)
		plan.VerifiedBy = deliver.VerifiedByDANE
		plan.Requirements = []deliver.TLSRequirement{{Mode: deliver.TLSVerified, Required: true,
			Verify: func(cs tls.ConnectionState) error {
				err := verify(cs)
				if errors.Is(err, dane.ErrNoMatch) {
					return &deliver.TLSPolicyError{ResultType: "validation-failure", Err: err}
				}
				return err
			}}}
	}
	return plan, true, nil
}

// sts is the plan MTA-STS gives over base, the plan without a policy.
func (c *Chain) sts(ctx context.Context, d deliver.TLSDestination, base deliver.TLSPlan) (deliver.TLSPlan, error) {
	r := c.STS(ctx, d.Domain)
	dec := r.Decide(d.Host)
	if !dec.Policy {
		return base, nil
	}
	plan := base
	plan.Policy, plan.PolicyDomain, plan.PolicyStrings, plan.MXHosts = "sts", r.Domain, r.Lines, r.MXPatterns()
	switch {
	case dec.Err != nil:
		// enforce, and the host is not one of the policy's: not used
		// (RFC 8461 §4.1).
		return plan, &deliver.TLSPolicyError{ResultType: "validation-failure", Err: dec.Err}
	case dec.Enforce:
		plan.VerifiedBy = deliver.VerifiedBySTS
		plan.Requirements = []deliver.TLSRequirement{{Mode: deliver.TLSVerified, Required: true}}
	}
	// testing: delivered as without a policy, reported under it (§5).
	return plan, nil
}
