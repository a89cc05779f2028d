package tlspolicy

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"elit.local/elit/deliver"
	"elit.local/elit/dns"
	"elit.local/elit/mtasts"
)

// zone: dane.example signs its MX and publishes a TLSA record for its MX
// host; plain.example is not signed; both may also have MTA-STS policies.
func zone() *dns.Mem {
	return &dns.Mem{
		MXs: map[string][]dns.MX{
			"dane.example":  {{Host: "mx.dane.example", Pref: 10}},
			"plain.example": {{Host: "mx.plain.example", Pref: 10}},
		},
		Addrs: map[string][]netip.Addr{
			"mx.dane.example":  {netip.MustParseAddr("192.0.2.1")},
			"mx.plain.example": {netip.MustParseAddr("192.0.2.2")},
		},
		TLSAs: map[string][]dns.TLSA{
			"_25._tcp.mx.dane.example": {{Usage: 3, Selector: 1, MatchingType: 1, Data: make([]byte, 32)}},
		},
		Secure: []string{"dane.example"},
	}
}

func sts(policies map[string]*mtasts.Policy) func(context.Context, string) mtasts.Result {
	return func(_ context.Context, domain string) mtasts.Result {
		return mtasts.Result{Domain: domain, Policy: policies[domain], Lines: []string{"version: STSv1"}}
	}
}

func TestChain(t *testing.T) {
	policies := map[string]*mtasts.Policy{
		"dane.example":    {Mode: mtasts.Enforce, MaxAge: time.Hour, MX: []string{"other.example"}},
		"plain.example":   {Mode: mtasts.Enforce, MaxAge: time.Hour, MX: []string{"*.plain.example"}},
		"testing.example": {Mode: mtasts.Testing, MaxAge: time.Hour, MX: []string{"mx.testing.example"}},
	}
	c := &Chain{DANE: zone(), STS: sts(policies)}
	ctx := context.Background()
	for _, tc := range []struct {
		name               string
		dest               deliver.TLSDestination
		policy, verifiedBy string
		required, verified bool
		errType            string
	}{
		// DANE wins over an MTA-STS policy that would refuse the host
		// (RFC 8461 §2).
		{"dane", deliver.TLSDestination{Transport: "direct", Domain: "dane.example", Host: "mx.dane.example"}, "tlsa", deliver.VerifiedByDANE, true, true, ""},
		{"sts enforce", deliver.TLSDestination{Transport: "direct", Domain: "plain.example", Host: "mx.plain.example"}, "sts", deliver.VerifiedBySTS, true, true, ""},
		{"sts enforce, host not listed", deliver.TLSDestination{Transport: "direct", Domain: "plain.example", Host: "mx.attacker.example"}, "sts", "", false, false, "validation-failure"},
		{"sts testing", deliver.TLSDestination{Transport: "direct", Domain: "testing.example", Host: "mx.testing.example"}, "sts", "", false, true, ""},
		{"no policy", deliver.TLSDestination{Transport: "direct", Domain: "none.example", Host: "mx.none.example"}, "no-policy-found", "", false, true, ""},
		{"relay", deliver.TLSDestination{Transport: "smarthost", Host: "mx.dane.example"}, "no-policy-found", "", false, true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			plan, err := c.TLSPlan(ctx, tc.dest)
			var pe *deliver.TLSPolicyError
			if tc.errType != "" {
				if !errors.As(err, &pe) || pe.ResultType != tc.errType {
					t.Fatalf("error %v, want a %s", err, tc.errType)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if plan.Policy != tc.policy || plan.VerifiedBy != tc.verifiedBy || len(plan.Requirements) == 0 ||
				plan.Requirements[0].Required != tc.required || (plan.Requirements[0].Mode == deliver.TLSVerified) != tc.verified {
				t.Errorf("plan %+v", plan)
			}
		})
	}
}

// TestChainDANEFailure: not knowing whether DANE applies skips the host
// (RFC 7672 §2.1.1), as dnssec-invalid when the answer was bogus.
func TestChainDANEFailure(t *testing.T) {
	for _, c := range []struct {
		fail error
		typ  string
	}{{dns.ErrBogus, "dnssec-invalid"}, {errors.New("timeout"), "tlsa-invalid"}} {
		z := zone()
		z.Fail = map[string]error{"_25._tcp.mx.dane.example TLSA": c.fail}
		_, err := (&Chain{DANE: z}).TLSPlan(context.Background(), deliver.TLSDestination{Transport: "direct", Domain: "dane.example", Host: "mx.dane.example"})
		var pe *deliver.TLSPolicyError
		if !errors.As(err, &pe) || pe.ResultType != c.typ {
			t.Errorf("%v: %v", c.fail, err)
		}
	}
}
