// Package mtasts is SMTP MTA Strict Transport Security (RFC 8461) for
// Elit: what a domain we deliver to asks of our connections to its MX
// hosts, and the policy we publish for our own domains.
//
// Discovery (§3): the TXT record at _mta-sts.<domain> ([LookupRecord],
// [ParseRecord], §3.1) announces a policy and its id; the policy is
// fetched from https://mta-sts.<domain>/.well-known/mta-sts.txt
// ([Fetcher], §3.3: verified TLS, HTTP 200 only, no redirects, text/plain,
// a size and a time limit) and parsed strictly ([ParsePolicy], §3.2).
//
// The [Cache] keeps policies in a directory of the state, one JSON file
// per policy domain, and applies §3.3 and §5.1: a policy is used until
// max_age has passed since it was fetched; a TXT record with another id
// makes it fetched again; a failed fetch keeps the cached policy (and is
// not retried for the same id for five minutes); the absence of a TXT
// record does not remove a cached policy (§3.1), except one in mode none,
// which a domain publishes on its way out of MTA-STS (§8.3) and which is
// dropped once the record is gone. [Cache.Run] (or [Cache.Refresh])
// refreshes the policies in use before they expire (§3.3: proactively,
// once a day), logging failures as warnings unless the mode is none.
//
// Delivery asks [Cache.Policy] for a domain and [Result.Decide] for each
// MX host (§4, §5): enforce lets only the hosts the policy lists be used,
// and only with STARTTLS and a certificate valid for the MX host name
// (§4.2), no fallback; testing delivers as without a policy but reports;
// none is no policy. The result carries what a TLS report (RFC 8460 §4.4)
// says of the policy: its lines, domain and MX patterns, and the result
// type of a failed discovery ([FailureType]).
//
// This package does not import elit/deliver: MTA-STS is a source of
// policy like the DNS, below the deliverer, and the deliverer's
// TLSPolicy seam is where it, DANE and REQUIRETLS are combined, which
// only the code that owns all three can do. [Result.Decide] gives that
// code all it needs in a few lines: Err → skip the host; Enforce → one
// requirement, verified and required; otherwise the opportunistic plan,
// under the policy type "sts" when Policy is set. TestDeliverAdapter
// (adapter_test.go) writes that adapter against deliver.TLSPolicy.
// Policies apply to direct delivery only: §3.4's smart host as policy
// domain is left to the caller.
//
// Publishing (issue 13): [Handler] serves our policy on the mta-sts.
// names of our domains and [Records] lists the DNS records that announce
// it, with an id that is a hash of the policy, so that it changes exactly
// when the policy does.
//
// Where the RFC leaves room, this package decides so:
//   - A TXT record is an MTA-STS record when it starts with "v=STSv1"
//     followed by a space, a tab, ";" or its end: the grammar of §3.1
//     allows "v=STSv1 ; id=…", which the sentence that discards records
//     "that do not begin with v=STSv1;" would drop when there are several.
//   - A duplicate field (any but mx, §3.2; id and v in the TXT record)
//     is ignored whatever its value, as long as it is a syntactically
//     valid key/value pair; the first one decides, and a first one with a
//     bad value (mode: bogus) makes the policy invalid even when a later
//     one is good.
//   - Field names and values are case-sensitive (the ABNF's %s).
//   - The policy's first line must be its version, as in the TXT record
//     (stricter than the ABNF of §3.2, which does not order the fields,
//     and than mox and mta-sts-query); max_age above 31557600 is
//     invalid, not clamped; blank lines are invalid; a trailing line end
//     is optional.
//   - Only an enforce policy authenticates an MX host for REQUIRETLS
//     (RFC 8689 §4.2.1 does not say whether testing does; mox decides
//     the same): Decision.Enforce with Err nil.
//   - Without a cached policy, a temporary DNS failure of the TXT lookup
//     gives no policy (delivery goes on opportunistically), as a failed
//     fetch does (§3.3 "for any reason"): an attacker who can make the
//     lookup fail can as well make it answer NXDOMAIN.
//   - A refresh fetches the policy again even when the id has not
//     changed, so that max_age counts from a real fetch (§3.2), and does
//     not fetch when the TXT record is gone (§3.1 ends discovery there).
package mtasts
