package deliver

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
)

// TLSMode is a way of using TLS on a connection.
type TLSMode string

// TLS modes, best first.
const (
	TLSVerified   TLSMode = "verified"   // TLS, the certificate checked (against the host name unless the requirement says otherwise)
	TLSUnverified TLSMode = "unverified" // TLS, the certificate not checked
	TLSNone       TLSMode = "none"       // plaintext
)

// TLSPolicy says what TLS a connection needs: the seam where MTA-STS (RFC
// 8461) and DANE (RFC 7672) come in. The deliverer asks it before each
// connection to a host and follows the plan it returns. An error means
// the host is not to be used (an MTA-STS policy in force that does not
// list it, a TLSA lookup that failed): the host is skipped, with the
// error as its temporary failure.
type TLSPolicy interface {
	TLSPlan(ctx context.Context, dest TLSDestination) (TLSPlan, error)
}

// TLSDestination is what a connection is for.
type TLSDestination struct {
	// Transport is the type of the transport: "direct" (to the MX hosts),
	// "smarthost" or "submission" (a relay that gets our password).
	Transport string
	// Domain is the recipients' domain in A-labels (the MTA-STS policy
	// domain); "" through a relay, which takes any domain.
	Domain string
	// Host is the host name about to be connected to (an MX host, the
	// domain itself when it has no MX, an address literal, or the relay),
	// the name TLSA records are looked up for (_25._tcp.HOST).
	Host string
	// ImplicitTLS is set when the connection starts with TLS (RFC 8314):
	// a TLSNone requirement is met with unverified TLS.
	ImplicitTLS bool
	// RequireTLS is set for a message with REQUIRETLS and a sender to
	// tell (RFC 8689 §4.2.1): only the plan's verified requirements are
	// tried, and to an MX host only when the plan's VerifiedBy names the
	// policy that authenticates it; the server must offer REQUIRETLS.
	RequireTLS bool
	// TLSOptional is set for a message with "TLS-Required: No" and no
	// REQUIRETLS (RFC 8689 §4.2.2): the plan is tried, then unverified
	// TLS and plaintext, and a policy error does not stop delivery.
	TLSOptional bool
	// TLSReport is set for a TLS report of ours (RFC 8460): its results
	// are not reported.
	TLSReport bool
}

// TLSPlan is what TLS to try on a host, in order: when a requirement
// cannot be met (STARTTLS refused or missing when required, a failed
// handshake, a certificate that does not verify), the next one is tried
// on a new connection; when none is left, the host fails temporarily.
type TLSPlan struct {
	// Policy names what decided, for TLS reports (RFC 8460 §4.4
	// policy-type: "sts", "tlsa", "no-policy-found").
	Policy string
	// Requirements, tried in order.
	Requirements []TLSRequirement
	// VerifiedBy names the policy in force that authenticates the host
	// as a mail exchanger of the domain and has its certificate verified
	// (RFC 8689 §4.2.1 steps 2 and 4): VerifiedBySTS or VerifiedByDANE;
	// "" when none does (no policy, MTA-STS in mode testing, the
	// default). REQUIRETLS mail goes to an MX host only when it is set.
	VerifiedBy string
	// For TLS reports (RFC 8460 §4.4): the domain the policy is published
	// for (policy-domain: the recipient domain for MTA-STS, the TLSA base
	// domain for DANE; "" the destination's domain), the policy as
	// published (policy-string: the MTA-STS policy's lines, or the TLSA
	// records in presentation format), and MTA-STS's mx patterns
	// (mx-host).
	PolicyDomain  string
	PolicyStrings []string
	MXHosts       []string
}

// Policies that may verify a host for REQUIRETLS (TLSPlan.VerifiedBy).
const (
	VerifiedBySTS  = "sts"  // an MTA-STS policy in mode enforce lists the host (RFC 8461 §4.1)
	VerifiedByDANE = "dane" // DNSSEC-signed MX and TLSA records (RFC 7672)
)

// TLSPolicyError is a failure of a TLS policy, with its result type for
// TLS reports (RFC 8460 §4.3): a TLSPlan error (sts-policy-fetch-error,
// sts-policy-invalid, sts-webpki-invalid, tlsa-invalid, dnssec-invalid,
// dane-required), or a TLSRequirement.Verify error (validation-failure,
// certificate-host-mismatch...).
type TLSPolicyError struct {
	ResultType string
	Err        error
}

func (e *TLSPolicyError) Error() string { return e.Err.Error() }
func (e *TLSPolicyError) Unwrap() error { return e.Err }

// TLSRequirement is what TLS one connection needs.
type TLSRequirement struct {
	// Mode is how to use STARTTLS when the host offers it: TLSVerified,
	// TLSUnverified, or TLSNone (plaintext even so).
	Mode TLSMode
	// Required: a host that does not offer STARTTLS fails this
	// requirement instead of getting the message in plaintext.
	Required bool
	// ServerNames, for TLSVerified, are the names the certificate may be
	// valid for (any one of them); none: the host name. The connection's
	// SNI is the host name in any case.
	ServerNames []string
	// Verify, for TLSVerified, replaces the check of the certificate
	// against the trusted roots and the names: DANE matches the chain
	// against TLSA records (RFC 6698 §2.1, RFC 7672 §3).
	Verify func(tls.ConnectionState) error
}

// Opportunistic is the default TLSPolicy: STARTTLS verified against the
// host name when the host offers it, else unverified TLS, else plaintext
// (RFC 3207 §4 leaves the client to decide; an attacker on the path can
// strip STARTTLS). A submission relay, which gets our password, needs
// verified TLS.
type Opportunistic struct{}

// TLSPlan implements TLSPolicy.
func (Opportunistic) TLSPlan(_ context.Context, dest TLSDestination) (TLSPlan, error) {
	if dest.Transport == "submission" {
		return TLSPlan{Policy: "no-policy-found", Requirements: []TLSRequirement{{Mode: TLSVerified, Required: true}}}, nil
	}
	return TLSPlan{Policy: "no-policy-found", Requirements: []TLSRequirement{{Mode: TLSVerified}, {Mode: TLSUnverified}, {Mode: TLSNone}}}, nil
}

// TLSReporter is told the TLS outcome of each connection that got to
// the point of TLS (for TLS reports, RFC 8460). It is called from the
// deliveries' goroutines, concurrently.
type TLSReporter interface {
	ReportTLS(TLSOutcome)
}

// TLSOutcome is what one connection asked of TLS and got; or, with no
// connection (Required zero), a TLS policy that failed for the host.
type TLSOutcome struct {
	TLSDestination
	Addr      string // the address dialled, ip:port
	LocalAddr string // our end of the connection, ip:port ("" without one)
	Policy    string // the plan's
	// The plan's policy for TLS reports (TLSPlan).
	PolicyDomain  string
	PolicyStrings []string
	MXHosts       []string
	Required      TLSRequirement
	// Fallback is set when Required is not the plan's first requirement:
	// what the plan allows once the policy's own requirement failed.
	Fallback bool
	Achieved TLSMode // what the session went on with (TLSNone after a failure)
	// STARTTLS and REQUIRETLS are what the server offered: STARTTLS in
	// its first EHLO reply, REQUIRETLS in its EHLO reply inside TLS.
	STARTTLS, REQUIRETLS bool
	// Version and CipherSuite of the TLS connection, when there is one.
	Version, CipherSuite uint16
	// Err is why the requirement was not met; nil when it was. Failure
	// is its result type for a TLS report (RFC 8460 §4.3):
	// starttls-not-supported, certificate-host-mismatch,
	// certificate-expired, certificate-not-trusted, validation-failure,
	// or a TLSPolicyError's.
	Err     error
	Failure string
}

type noReporter struct{}

func (noReporter) ReportTLS(TLSOutcome) {}

// tlsConfig is the TLS configuration that meets req on a connection to
// host; roots verify the certificate (nil: the system's).
func tlsConfig(host string, roots *x509.CertPool, req TLSRequirement) *tls.Config {
	cfg := &tls.Config{ServerName: host, RootCAs: roots, MinVersion: tls.VersionTLS12}
	switch {
	case req.Mode != TLSVerified:
		cfg.InsecureSkipVerify = true
	case req.Verify != nil:
		cfg.InsecureSkipVerify, cfg.VerifyConnection = true, req.Verify
	case len(req.ServerNames) > 0:
		cfg.InsecureSkipVerify, cfg.VerifyConnection = true, verifyNames(roots, req.ServerNames)
	}
	return cfg
}

// verifyNames checks the chain against roots and any one of names, as
// crypto/tls checks it against the server name.
func verifyNames(roots *x509.CertPool, names []string) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("no certificate")
		}
		opts := x509.VerifyOptions{Roots: roots, Intermediates: x509.NewCertPool()}
		for _, c := range cs.PeerCertificates[1:] {
			opts.Intermediates.AddCert(c)
		}
		var errs []error
		for _, name := range names {
			opts.DNSName = name
			if _, err := cs.PeerCertificates[0].Verify(opts); err != nil {
				errs = append(errs, err)
				continue
			}
			return nil
		}
		return fmt.Errorf("the certificate is valid for none of %q: %w", names, errors.Join(errs...))
	}
}

// errNoSTARTTLS is a host without STARTTLS where TLS is required.
var errNoSTARTTLS = errors.New("the server offers no STARTTLS")

// tlsFailure is the result type of a TLS failure (RFC 8460 §4.3).
func tlsFailure(err error) string {
	var host x509.HostnameError
	var inv x509.CertificateInvalidError
	var unknown x509.UnknownAuthorityError
	var policy *TLSPolicyError
	switch {
	case errors.As(err, &policy) && policy.ResultType != "":
		return policy.ResultType
	case errors.Is(err, errNoSTARTTLS):
		return "starttls-not-supported"
	case errors.As(err, &host):
		return "certificate-host-mismatch"
	case errors.As(err, &inv) && inv.Reason == x509.Expired:
		return "certificate-expired"
	case errors.As(err, &unknown):
		return "certificate-not-trusted"
	}
	return "validation-failure"
}
