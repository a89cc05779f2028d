package deliver

// REQUIRETLS and TLS-Required: No (RFC 8689) at delivery: how a
// message's requirement changes the TLS policy's plan for a host.

// requireTLSPlan is plan as REQUIRETLS mail may use it (RFC 8689 §4.2.1):
// to a host found through the domain's MX records only when a policy in
// force authenticates it (step 2: MTA-STS, or DNSSEC as DANE has it), and
// then only the plan's verified requirements, each required (step 4). A
// relay, the domain itself without MX and an address literal are not
// found through MX records: verified TLS is enough. A result says why
// the plan will not do: 5.7.30, permanent (§4.2.1 names the code).
func requireTLSPlan(dest TLSDestination, plan TLSPlan) (TLSPlan, *result) {
	_, literal := literalIP(dest.Domain)
	viaMX := dest.Transport == "direct" && dest.Host != dest.Domain && !literal
	if viaMX && plan.VerifiedBy == "" {
		r := failure("5.7.30", "REQUIRETLS: no MTA-STS policy in mode enforce nor DANE authenticates %s as a mail exchanger of %s (RFC 8689 section 4.2.1)", dest.Host, dest.Domain)
		return plan, &r
	}
	var reqs []TLSRequirement
	for _, r := range plan.Requirements {
		if r.Mode == TLSVerified {
			r.Required = true
			reqs = append(reqs, r)
		}
	}
	if len(reqs) == 0 {
		r := failure("5.7.30", "REQUIRETLS: the TLS policy for %s asks for no verified TLS (RFC 8689 section 4.2.1)", dest.Host)
		return plan, &r
	}
	plan.Requirements = reqs
	return plan, nil
}

// optionalPlan is plan for mail with "TLS-Required: No" (RFC 8689
// §4.2.2: "attempt to negotiate STARTTLS if possible, and follow any
// policy published by the recipient domain, but do not fail if this is
// unsuccessful"): the policy's requirements, then unverified TLS, then
// plaintext, when the plan does not end so already.
func optionalPlan(plan TLSPlan) TLSPlan {
	reqs := append([]TLSRequirement(nil), plan.Requirements...)
	last := reqs[len(reqs)-1]
	if last.Mode == TLSNone && !last.Required {
		return plan
	}
	if last.Mode != TLSUnverified || last.Required {
		reqs = append(reqs, TLSRequirement{Mode: TLSUnverified})
	}
	plan.Requirements = append(reqs, TLSRequirement{Mode: TLSNone})
	return plan
}
