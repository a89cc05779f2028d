package mtasts

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"sync"
	"time"

	"elit.local/elit/dns"
)

// Errors a fetch wraps, by the TLS report result type they are (RFC 8460
// §4.3.2; errInvalid is the third, sts-policy-invalid). Callers tell
// them apart with FailureType.
var (
	// errFetch: the policy could not be retrieved (no address, no
	// connection, a time-out, an HTTP status other than 200, a redirect):
	// sts-policy-fetch-error.
	errFetch = errors.New("MTA-STS policy fetch failed")
	// errWebPKI: the policy host's certificate is not valid for its name
	// or does not chain to a trusted root (§3.3): sts-webpki-invalid.
	errWebPKI = errors.New("MTA-STS policy host certificate not valid")
)

// FailureType returns the TLS report result type (RFC 8460 §4.3.2) of a
// failed policy discovery: sts-policy-fetch-error, sts-policy-invalid or
// sts-webpki-invalid; "" for any other error.
func FailureType(err error) string {
	switch {
	case errors.Is(err, errWebPKI):
		return "sts-webpki-invalid"
	case errors.Is(err, errInvalid):
		return "sts-policy-invalid"
	case errors.Is(err, errFetch):
		return "sts-policy-fetch-error"
	}
	return ""
}

// Defaults of a Fetcher, §3.3's suggestions.
const (
	DefaultTimeout = time.Minute
	DefaultMaxSize = 64 << 10
)

// Fetcher gets policies over HTTPS (RFC 8461 §3.3). The zero value uses
// the system's roots and resolver; a Fetcher is safe for concurrent use
// and its fields must not change once it has fetched.
type Fetcher struct {
	// Roots verify the policy host's certificate; nil: the system's.
	Roots *x509.CertPool
	// DialContext, when set, makes the connections (tests map
	// mta-sts.<domain>:443 to a server on loopback).
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
	// Resolver, without DialContext, finds the policy host's addresses
	// (the server's resolver rather than the system's); nil: the system's.
	Resolver dns.Resolver
	// Timeout bounds a whole fetch; 0: DefaultTimeout.
	Timeout time.Duration
	// MaxSize bounds the policy's size; 0: DefaultMaxSize.
	MaxSize int64

	once   sync.Once
	client *http.Client
}

// URL returns the address of domain's policy (§3.3): domain in lower-case
// A-labels.
func URL(domain string) string {
	return "https://mta-sts." + domain + "/.well-known/mta-sts.txt"
}

// Fetch gets and parses the policy of domain (§3.3): over HTTPS with a
// certificate valid for mta-sts.<domain> (in A-labels), HTTP 200 only,
// no redirect followed, no HTTP cache, media type text/plain (parameters
// allowed), at most MaxSize octets within Timeout. It returns the policy
// and its text. FailureType gives the TLS report result type of an
// error.
func (f *Fetcher) Fetch(ctx context.Context, domain string) (*Policy, string, error) {
	d, err := normalizeDomain(domain)
	if err != nil {
		return nil, "", fmt.Errorf("%w: %w", errFetch, err)
	}
	url := URL(d)
	timeout := f.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w: %w", url, errFetch, err)
	}
	resp, err := f.httpClient().Do(req)
	if err != nil {
		var verr *tls.CertificateVerificationError
		if errors.As(err, &verr) {
			return nil, "", fmt.Errorf("%s: %w: %w", url, errWebPKI, err)
		}
		return nil, "", fmt.Errorf("%s: %w: %w", url, errFetch, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		if loc := resp.Header.Get("Location"); loc != "" {
			return nil, "", fmt.Errorf("%s: %w: %s, a redirect to %q, not followed (RFC 8461 §3.3)", url, errFetch, resp.Status, loc)
		}
		return nil, "", fmt.Errorf("%s: %w: %s, not 200", url, errFetch, resp.Status)
	}
	// §3.2: text/plain guards against hosts where users may publish other
	// content at a path of their choice.
	if mt, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type")); err != nil || mt != "text/plain" {
		return nil, "", fmt.Errorf("%s: %w: media type %q, not text/plain", url, errInvalid, resp.Header.Get("Content-Type"))
	}
	limit := f.MaxSize
	if limit <= 0 {
		limit = DefaultMaxSize
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w: %w", url, errFetch, err)
	}
	if int64(len(body)) > limit {
		return nil, "", fmt.Errorf("%s: %w: over %d octets", url, errInvalid, limit)
	}
	p, err := ParsePolicy(string(body))
	if err != nil {
		return nil, string(body), fmt.Errorf("%s: %w", url, err)
	}
	return p, string(body), nil
}

func (f *Fetcher) httpClient() *http.Client {
	f.once.Do(func() {
		f.client = &http.Client{
			Transport: &http.Transport{
				Proxy:                  nil, // policies come from the policy host itself
				DialContext:            f.dial,
				TLSClientConfig:        &tls.Config{RootCAs: f.Roots, MinVersion: tls.VersionTLS12},
				DisableKeepAlives:      true, // a domain's policy is fetched once a day at most
				MaxResponseHeaderBytes: 64 << 10,
			},
			// §3.3: "HTTP 3xx redirects MUST NOT be followed"; the 3xx
			// comes back and is refused as a status other than 200.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	})
	return f.client
}

// dial connects to the policy host: through DialContext, or to the
// addresses Resolver gives in turn, or through the system.
func (f *Fetcher) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	if f.DialContext != nil {
		return f.DialContext(ctx, network, addr)
	}
	var d net.Dialer
	if f.Resolver == nil {
		return d.DialContext(ctx, network, addr)
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	ips, err := f.Resolver.LookupAddrs(ctx, host)
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, ip := range ips {
		c, err := d.DialContext(ctx, "tcp", net.JoinHostPort(ip.String(), port))
		if err == nil {
			return c, nil
		}
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		return nil, fmt.Errorf("%s: no address", host)
	}
	return nil, errors.Join(errs...)
}
