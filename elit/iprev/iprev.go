// Package iprev checks that a client's address and its names agree: the
// "iprev" method of Authentication-Results (RFC 8601 §3): the PTR names
// of the address (the reverse lookup), each confirmed when one of its
// addresses (the forward lookup) is the client's. Its results are those
// of §2.7.3.
package iprev

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	"elit.local/elit/dns"
)

// Verdict is an iprev result (RFC 8601 §2.7.3).
type Verdict string

// The results of §2.7.3.
const (
	// Pass: a name of the address has the address.
	Pass Verdict = "pass"
	// Fail: the address has names, none of which has the address.
	Fail Verdict = "fail"
	// TempError: a lookup failed for a while (SERVFAIL, a timeout) and
	// no name was confirmed.
	TempError Verdict = "temperror"
	// PermError: the address has no name (NXDOMAIN or no PTR).
	PermError Verdict = "permerror"
)

// maxNames bounds the names checked, as RFC 7208 §4.6.4 does for the
// same lookups in SPF's ptr: a client's PTR records cost us no more.
const maxNames = 10

// Result is the outcome of Check.
type Result struct {
	Result Verdict
	IP     netip.Addr // as policy.iprev writes it (§2.7.3)
	// Names are the PTR names of IP, in lower case, in the order of the
	// answer (at most 10).
	Names []string
	// Confirmed are the names, of Names, that have IP among their
	// addresses: the one to write in a comment (and Received) is the
	// first.
	Confirmed []string
	Err       error // why the result is temperror, permerror or fail
}

// Check looks up the names of ip and confirms each (RFC 8601 §3): pass
// when one has ip among its addresses of ip's family.
func Check(ctx context.Context, r dns.Resolver, ip netip.Addr) Result {
	ip = ip.Unmap()
	res := Result{IP: ip}
	if !ip.IsValid() {
		res.Result, res.Err = PermError, errors.New("iprev: no address")
		return res
	}
	names, err := r.LookupPTR(ctx, ip)
	switch {
	case errors.Is(err, dns.ErrNotFound) || err == nil && len(names) == 0:
		res.Result, res.Err = PermError, fmt.Errorf("iprev: %s has no PTR record", ip)
		return res
	case err != nil:
		res.Result, res.Err = TempError, fmt.Errorf("iprev: PTR of %s: %w", ip, temporary(err))
		return res
	}
	if len(names) > maxNames {
		names = names[:maxNames]
	}
	res.Names = names
	network := "ip6"
	if ip.Is4() {
		network = "ip4"
	}
	var tempErr error
	for _, name := range names {
		addrs, err := r.LookupIP(ctx, network, name)
		if err != nil && !errors.Is(err, dns.ErrNotFound) {
			tempErr = fmt.Errorf("iprev: addresses of %s: %w", name, temporary(err))
			continue
		}
		for _, a := range addrs {
			if a.Unmap() == ip {
				res.Confirmed = append(res.Confirmed, name)
				break
			}
		}
	}
	switch {
	case len(res.Confirmed) > 0:
		res.Result = Pass
	case tempErr != nil:
		res.Result, res.Err = TempError, tempErr
	default:
		res.Result, res.Err = Fail, fmt.Errorf("iprev: no name of %s has it among its addresses", ip)
	}
	return res
}

// temporary makes a lookup failure other than NXDOMAIN temporary (RFC
// 8601 §2.7.3: "other error condition").
func temporary(err error) error {
	if errors.Is(err, dns.ErrTemporary) {
		return err
	}
	return fmt.Errorf("%w: %w", dns.ErrTemporary, err)
}
