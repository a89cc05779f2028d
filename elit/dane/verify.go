package dane

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"elit.local/elit/dns"
)

// Errors of Verify that callers branch on: a chain that no usable
// record matches (RFC 8460 §4.3.1 reports it as validation-failure),
// and records of which none is usable (RFC 8460 §4.3.2, tlsa-invalid).
// A DANE-TA match whose chain fails the name or date check returns the
// error of crypto/x509 instead (x509.HostnameError,
// x509.CertificateInvalidError), which TLS reports tell apart.
var (
	ErrNoMatch  = errors.New("no TLSA record matches the server's certificate chain")
	ErrUnusable = errors.New("no usable TLSA record")
)

// Verify checks the chain a server sent (its certificate first) against
// records, which are all the usable ones of the TLSA RRset (RFC 7672
// §3.1): it passes when one matches.
//
//   - DANE-EE(3) matches the server's certificate (or key), whatever
//     names and dates it holds (RFC 7672 §3.1.1, RFC 7671 §5.1).
//   - DANE-TA(2) matches a certificate of the chain (or, given whole
//     with selector 0, the record's own certificate, which the server
//     need not send, RFC 7671 §5.2.2); the server's certificate must
//     chain to it through the certificates sent, be valid at now, and
//     be issued to one of names (RFC 7672 §3.1.2 and §3.2.2: the TLSA
//     base domain, the MX host name). Wildcards are matched as RFC 7672
//     §3.2.3 says, in the leftmost label only.
//
// Unusable records are ignored; without a usable one Verify fails
// (ErrUnusable).
func Verify(records []dns.TLSA, chain []*x509.Certificate, names []string, now time.Time) error {
	if len(chain) == 0 {
		return errors.New("dane: the server sent no certificate")
	}
	usable := UsableRecords(records)
	if len(usable) == 0 {
		return fmt.Errorf("dane: %w", ErrUnusable)
	}
	leaf := chain[0]
	for _, r := range usable {
		if r.Usage == UsageDANEEE && matches(r, leaf) {
			return nil
		}
	}
	var chainErr error
	for _, r := range usable {
		if r.Usage != UsageDANETA {
			continue
		}
		var anchors []*x509.Certificate
		for _, c := range chain {
			if matches(r, c) {
				anchors = append(anchors, c)
			}
		}
		if r.Selector == SelectorCert && r.MatchingType == MatchFull {
			if c, err := x509.ParseCertificate(r.Data); err == nil {
				anchors = append(anchors, c)
			}
		}
		for _, ta := range anchors {
			err := chainsTo(chain, ta, names, now)
			if err == nil {
				return nil
			}
			// A chain that does not lead to the anchor is no match;
			// one that does, with a wrong name or date, is a failure
			// of its own.
			var unknown x509.UnknownAuthorityError
			if !errors.As(err, &unknown) {
				chainErr = err
			}
		}
	}
	if chainErr != nil {
		return fmt.Errorf("dane: a DANE-TA record matches, but: %w", chainErr)
	}
	return fmt.Errorf("dane: %w (%d usable records)", ErrNoMatch, len(usable))
}

// chainsTo checks that chain[0] chains to the trust anchor ta through
// the certificates of chain, at now, for one of names. Any extended key
// usage is accepted: DANE does not ask for one.
func chainsTo(chain []*x509.Certificate, ta *x509.Certificate, names []string, now time.Time) error {
	roots := x509.NewCertPool()
	roots.AddCert(ta)
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	if len(names) == 0 {
		return errors.New("no name to check the certificate against")
	}
	var errs []error
	for _, name := range names {
		opts := x509.VerifyOptions{Roots: roots, Intermediates: inter, DNSName: name, CurrentTime: now,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}
		if _, err := chain[0].Verify(opts); err != nil {
			errs = append(errs, err)
			continue
		}
		return nil
	}
	if len(errs) == 1 {
		return errs[0]
	}
	return fmt.Errorf("the certificate is valid for none of %q: %w", names, errors.Join(errs...))
}

// VerifyConnection returns a tls.Config.VerifyConnection hook that
// checks the server's chain with Verify, at the time now returns (nil:
// time.Now). The tls.Config sets InsecureSkipVerify, so that crypto/tls
// does not check the chain against the system's roots first; the hook
// is then the only check (RFC 7672 §3.1 replaces PKIX).
func VerifyConnection(records []dns.TLSA, names []string, now func() time.Time) func(tls.ConnectionState) error {
	if now == nil {
		now = time.Now
	}
	return func(cs tls.ConnectionState) error {
		return Verify(records, cs.PeerCertificates, names, now())
	}
}
