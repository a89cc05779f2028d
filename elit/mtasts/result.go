package mtasts

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Result is what Cache.Policy found for a domain: the policy in force,
// if any, and what a TLS report says of it (RFC 8460 §4.4).
type Result struct {
	// Domain is the policy domain, in lower-case A-labels
	// (policy-domain).
	Domain string
	// Policy is the policy in force; nil when there is none (no record,
	// or none could be fetched and none is cached).
	Policy *Policy
	// ID is the policy's id, from the TXT record it was fetched for.
	ID string
	// Lines is the policy as it was served, line by line
	// (policy-string).
	Lines []string
	// Fetched and Expires: when the policy was fetched, and when it
	// stops being used unless it is fetched again (max_age later).
	Fetched, Expires time.Time
	// Failure is the TLS report result type of a failed discovery
	// (FailureType: sts-policy-fetch-error, sts-policy-invalid,
	// sts-webpki-invalid); "" when none failed. With a cached policy the
	// failure leaves it in force (§3.3).
	Failure string
	// Err is why discovery did not give a new policy: no record, a
	// failed lookup or fetch; nil when it did, or the cached policy was
	// current.
	Err error
}

// Mode is the mode of the policy in force, None without one.
func (r Result) Mode() Mode {
	if r.Policy == nil {
		return None
	}
	return r.Policy.Mode
}

// MXPatterns are the policy's MX patterns (a TLS report's mx-host,
// RFC 8460 §4.4, an array since erratum 6241).
func (r Result) MXPatterns() []string {
	if r.Policy == nil {
		return nil
	}
	return r.Policy.MX
}

// Match reports whether host is an MX host the policy lists (§4.1);
// false without a policy.
func (r Result) Match(host string) bool {
	return r.Policy != nil && r.Policy.Match(host)
}

// ErrMXMismatch is wrapped by Decision.Err: an enforce policy does not
// list the MX host (§4.1), which must not be used.
var ErrMXMismatch = errors.New("MX host not listed in the MTA-STS policy")

// Decision is what the policy asks of a connection to one MX host (§4,
// §5).
type Decision struct {
	// Policy is set when a policy applies (enforce or testing): the
	// connection's TLS outcome is reported under the policy type "sts"
	// for the policy domain (RFC 8460 §4.4).
	Policy bool
	// Enforce: STARTTLS is required and the certificate must be valid
	// for the MX host name and chain to a trusted root (§4.2); no
	// fallback to unverified TLS or plaintext. With Err nil, the policy
	// authenticates the host as the domain's MX (what REQUIRETLS asks,
	// RFC 8689 §4.2.1; a testing policy does not, as mox also decides).
	Enforce bool
	// Mismatch: the policy does not list the host (§4.1). With testing
	// it is reported (RFC 8460 validation-failure, reason
	// MismatchReason) and the host used.
	Mismatch bool
	// Err, when not nil, says why the host must not be used: an enforce
	// policy does not list it. It wraps ErrMXMismatch; the delivery goes
	// on with the next MX host and fails temporarily at worst (§5.1).
	Err error
}

// MismatchReason is the failure-reason-code of a TLS report's
// validation-failure for an MX host the policy does not list (RFC 8460
// has no result type for it; mox reports the same).
const MismatchReason = "mtasts-policy-mx-mismatch"

// Decide says what the policy asks of a connection to the MX host host
// (§4, §5).
func (r Result) Decide(host string) Decision {
	mode := r.Mode()
	if mode == None {
		return Decision{}
	}
	d := Decision{Policy: true, Enforce: mode == Enforce}
	if !r.Policy.Match(host) {
		d.Mismatch = true
		if d.Enforce {
			d.Err = fmt.Errorf("%s: %w of %s (mx %s)", host, ErrMXMismatch, r.Domain, strings.Join(r.Policy.MX, ", "))
		}
	}
	return d
}
