package mtasts_test

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"elit.local/elit/deliver"
	"elit.local/elit/mtasts"
)

// stsPolicy is MTA-STS as a deliver.TLSPolicy: the adapter the package
// documentation promises in a few lines, written against the
// deliverer's seam (deliver does not import mtasts: no cycle).
type stsPolicy struct {
	policy func(ctx context.Context, domain string) mtasts.Result // (*mtasts.Cache).Policy
	next   deliver.TLSPolicy                                      // without a policy
}

func (p stsPolicy) TLSPlan(ctx context.Context, dest deliver.TLSDestination) (deliver.TLSPlan, error) {
	plan, err := p.next.TLSPlan(ctx, dest)
	if dest.Transport != "direct" || err != nil {
		return plan, err // a relay: RFC 8461 §3.4 is not applied
	}
	d := p.policy(ctx, dest.Domain).Decide(dest.Host)
	switch {
	case d.Err != nil: // enforce, host not listed: skip it
		return deliver.TLSPlan{Policy: "sts"}, d.Err
	case d.Enforce: // verified against the MX name, no fallback
		return deliver.TLSPlan{Policy: "sts", Requirements: []deliver.TLSRequirement{{Mode: deliver.TLSVerified, Required: true}}}, nil
	case d.Policy: // testing: as without a policy, reported as sts
		plan.Policy = "sts"
	}
	return plan, nil
}

// TestDeliverAdapter: the adapter's plans for each mode.
func TestDeliverAdapter(t *testing.T) {
	policies := map[string]*mtasts.Policy{
		"enforce.example": {Mode: mtasts.Enforce, MaxAge: time.Hour, MX: []string{"*.enforce.example"}},
		"testing.example": {Mode: mtasts.Testing, MaxAge: time.Hour, MX: []string{"mx.testing.example"}},
		"none.example":    {Mode: mtasts.None, MaxAge: time.Hour},
	}
	p := stsPolicy{
		policy: func(_ context.Context, domain string) mtasts.Result {
			return mtasts.Result{Domain: domain, Policy: policies[domain]}
		},
		next: deliver.Opportunistic{},
	}
	ctx := context.Background()
	opportunistic, _ := deliver.Opportunistic{}.TLSPlan(ctx, deliver.TLSDestination{Transport: "direct", Domain: "x.example", Host: "mx.x.example"})
	verified := []deliver.TLSRequirement{{Mode: deliver.TLSVerified, Required: true}}
	for _, tc := range []struct {
		transport, domain, host string
		policy                  string
		reqs                    []deliver.TLSRequirement
		mismatch                bool
	}{
		{"direct", "enforce.example", "mx1.enforce.example", "sts", verified, false},
		{"direct", "enforce.example", "mx.attacker.example", "sts", nil, true},
		{"direct", "testing.example", "mx.testing.example", "sts", opportunistic.Requirements, false},
		{"direct", "testing.example", "mx.attacker.example", "sts", opportunistic.Requirements, false},
		{"direct", "none.example", "mx.none.example", "no-policy-found", opportunistic.Requirements, false},
		{"direct", "other.example", "mx.other.example", "no-policy-found", opportunistic.Requirements, false},
		{"smarthost", "", "relay.example", "no-policy-found", opportunistic.Requirements, false},
	} {
		plan, err := p.TLSPlan(ctx, deliver.TLSDestination{Transport: tc.transport, Domain: tc.domain, Host: tc.host})
		if tc.mismatch != errors.Is(err, mtasts.ErrMXMismatch) || !tc.mismatch && err != nil {
			t.Errorf("%s %s: error %v", tc.domain, tc.host, err)
		}
		if plan.Policy != tc.policy || !reflect.DeepEqual(plan.Requirements, tc.reqs) {
			t.Errorf("%s %s: plan %+v, want policy %s, requirements %+v", tc.domain, tc.host, plan, tc.policy, tc.reqs)
		}
	}
}
