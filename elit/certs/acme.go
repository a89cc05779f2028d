package certs

// ACME (RFC 8555) with the server's own key. autocert makes a new key
// for each certificate it orders first, and may rotate it at renewals;
// a TLSA record naming the key (RFC 7671 §8.1) would then go stale. So
// the order is placed here, with golang.org/x/crypto/acme, and the
// certificate request is always signed by the server's key. The cache
// keeps autocert's layout (the account key in acme_account+key, the
// certificate in a file named as the host: key and chain, PEM), so that
// the account of an earlier version goes on being used.

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/renameio/v2"
	"golang.org/x/crypto/acme"
	"golang.org/x/net/netutil"
)

// acmeIssuer gets and renews the host name's certificate.
type acmeIssuer struct {
	cfg    ACME
	host   string
	alt    []string          // more names wanted (ACME.AltNames), lower case
	key    *ecdsa.PrivateKey // the server's key: every certificate's
	client *acme.Client
	now    func() time.Time
	log    *slog.Logger

	registered bool // the account exists (only Obtain's goroutine)
	httpServed atomic.Bool

	mu   sync.Mutex
	http map[string]string          // HTTP-01: path → key authorization
	alpn map[string]tls.Certificate // TLS-ALPN-01: host → challenge certificate

	cert atomic.Pointer[tls.Certificate] // the certificate obtained; nil before

	// failure is the last order's error and its time, until an order
	// succeeds (the status page shows it).
	failure atomic.Pointer[acmeFailure]
}

type acmeFailure struct {
	err string
	at  time.Time
}

// failed records a failed order.
func (a *acmeIssuer) failed(err error) {
	a.failure.Store(&acmeFailure{err.Error(), a.now()})
}

const accountKeyName = "acme_account+key"

func newACMEIssuer(c ACME, host string, key *ecdsa.PrivateKey, now func() time.Time, log *slog.Logger) (*acmeIssuer, error) {
	httpClient := &http.Client{Timeout: time.Minute}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("-acme-ca-file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("-acme-ca-file %s: no certificate", c.CAFile)
		}
		httpClient.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	}
	if err := os.MkdirAll(c.CacheDir, 0o700); err != nil {
		return nil, fmt.Errorf("ACME cache: %w", err)
	}
	var alt []string
	for _, n := range c.AltNames {
		if n = strings.ToLower(strings.TrimSuffix(n, ".")); n != "" && n != strings.ToLower(host) && !slices.Contains(alt, n) {
			alt = append(alt, n)
		}
	}
	a := &acmeIssuer{cfg: c, host: strings.ToLower(host), alt: alt, key: key, now: now, log: log,
		client: &acme.Client{DirectoryURL: c.Directory, HTTPClient: httpClient, UserAgent: "elit"},
		http:   map[string]string{}, alpn: map[string]tls.Certificate{}}
	return a, nil
}

// HTTPHandler answers HTTP-01 challenges (RFC 8555 §8.3); without ACME it
// answers 404. Serving it lets ACME use HTTP-01 when TLS-ALPN-01 fails.
func (s *Source) HTTPHandler() http.Handler {
	if s.acme == nil {
		return http.NotFoundHandler()
	}
	a := s.acme
	a.httpServed.Store(true)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		body, ok := a.http[r.URL.Path]
		a.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		w.Write([]byte(body))
	})
}

// ServeHTTPS serves l, port 443, until ctx ends: TLS-ALPN-01 challenges
// (RFC 8737; the handshake is the answer, for a client that offers only
// the acme-tls/1 protocol) and, to every other client, h over HTTPS with
// the server's certificate (h nil: nothing but challenges). The
// challenges are answered only with ACME.
func (s *Source) ServeHTTPS(ctx context.Context, l net.Listener, h http.Handler) {
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		// A client's protocols are matched in this order: the
		// challenge is only for the client that offers nothing else.
		NextProtos: []string{"http/1.1", acme.ALPNProto},
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			if len(hello.SupportedProtos) == 1 && hello.SupportedProtos[0] == acme.ALPNProto {
				return s.challengeCert(hello.ServerName)
			}
			if h == nil {
				return nil, errors.New("only TLS-ALPN-01 challenges here")
			}
			return s.GetCertificate(hello)
		},
	}
	if h == nil {
		h = http.NotFoundHandler()
	}
	hs := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       time.Minute,
		MaxHeaderBytes:    16 << 10,
		// After the handshake of a challenge there is nothing to say.
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){
			acme.ALPNProto: func(_ *http.Server, c *tls.Conn, _ http.Handler) { c.Close() },
		},
	}
	if s.log != nil {
		hs.ErrorLog = slog.NewLogLogger(s.log.Handler(), slog.LevelDebug)
	}
	go func() {
		<-ctx.Done()
		hs.Close()
	}()
	// Port 443 is open to anyone: a client that opens connections
	// without end waits for a free one instead of costing a goroutine
	// and a handshake each (the timeouts above free them).
	hs.Serve(tls.NewListener(netutil.LimitListener(l, maxHTTPSConns), cfg))
}

// maxHTTPSConns bounds ServeHTTPS's concurrent connections: senders fetch
// a policy once a day at most, a CA validates a few times per order.
var maxHTTPSConns = 256

// challengeCert is the TLS-ALPN-01 challenge certificate of name, while
// its challenge is under way.
func (s *Source) challengeCert(name string) (*tls.Certificate, error) {
	if s.acme == nil {
		return nil, errors.New("no ACME")
	}
	a := s.acme
	a.mu.Lock()
	cert, ok := a.alpn[strings.ToLower(strings.TrimSuffix(name, "."))]
	a.mu.Unlock()
	if !ok {
		return nil, errors.New("no TLS-ALPN-01 challenge for this name")
	}
	return &cert, nil
}

// Obtain gets the first ACME certificate (the one in the cache when it
// is the server key's and valid), retrying with backoff until ctx ends,
// then renews it when a third of its lifetime is left (as autocert
// does), until ctx ends. It does nothing without ACME.
func (s *Source) Obtain(ctx context.Context) {
	if s.acme == nil {
		return
	}
	a := s.acme
	cert, err := a.cached()
	if cert != nil && err != nil {
		// Valid for the host name, not for every name wanted: served
		// while a certificate for all of them is ordered.
		a.use(cert, "ACME certificate obtained")
		a.log.Info("ACME: ordering a certificate for more names", "reason", err)
		if next, err := a.order(ctx); err == nil {
			cert = next
		}
		err = nil
	}
	if err != nil {
		a.log.Info("ACME: no usable certificate in the cache; ordering one", "reason", err)
		wait := 90 * time.Second
		for {
			if cert, err = a.order(ctx); err == nil {
				break
			}
			a.failed(err)
			a.log.Error("ACME: no certificate yet; serving the fallback", "hostname", a.host, "err", err, "retry_in", wait)
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
			wait = min(2*wait, time.Hour)
		}
	}
	a.use(cert, "ACME certificate obtained")
	for {
		wait := renewWait(cert.Leaf, a.now())
		if missing := a.missing(cert.Leaf); len(missing) > 0 {
			// The names the CA could not validate are tried again
			// sooner than the renewal (few enough for the CAs' limits
			// on failed validations).
			wait = min(wait, altRetry)
			a.log.Info("ACME: the certificate lacks names; ordering again later", "names", missing, "retry_in", wait)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		next, err := a.order(ctx)
		if err != nil {
			a.failed(err)
			a.log.Error("ACME: renewal failed; the current certificate stays", "hostname", a.host, "err", err, "expires", cert.Leaf.NotAfter)
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Hour):
			}
			continue
		}
		cert = next
		a.use(cert, "ACME certificate renewed")
	}
}

// altRetry is how soon names missing from the certificate are tried
// again.
const altRetry = 6 * time.Hour

// missing returns the alternative names leaf is not valid for.
func (a *acmeIssuer) missing(leaf *x509.Certificate) []string {
	var m []string
	for _, n := range a.alt {
		if leaf.VerifyHostname(n) != nil {
			m = append(m, n)
		}
	}
	return m
}

// use serves cert from now on.
func (a *acmeIssuer) use(cert *tls.Certificate, msg string) {
	a.cert.Store(cert)
	a.failure.Store(nil)
	a.log.Info(msg, "hostname", a.host, "issuer", cert.Leaf.Issuer.String(), "expires", cert.Leaf.NotAfter)
}

// renewWait is how long until leaf is renewed: when a third of its
// lifetime is left, at most 30 days before it expires.
func renewWait(leaf *x509.Certificate, now time.Time) time.Duration {
	return max(0, renewAt(leaf).Sub(now))
}

// renewAt is when leaf is renewed.
func renewAt(leaf *x509.Certificate) time.Time {
	return leaf.NotAfter.Add(-min(leaf.NotAfter.Sub(leaf.NotBefore)/3, 30*24*time.Hour))
}

// cached returns the certificate of the cache if it is valid, for the
// host name and for the server's key.
func (a *acmeIssuer) cached() (*tls.Certificate, error) {
	data, err := os.ReadFile(filepath.Join(a.cfg.CacheDir, a.host))
	if err != nil {
		return nil, err
	}
	block, rest := pem.Decode(data)
	if block == nil || !strings.Contains(block.Type, "PRIVATE KEY") {
		return nil, errors.New("no key in the cached certificate")
	}
	var der [][]byte
	for {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		der = append(der, b.Bytes)
	}
	cert, err := a.check(der)
	if err != nil {
		return nil, err
	}
	if m := a.missing(cert.Leaf); len(m) > 0 {
		return cert, fmt.Errorf("the cached certificate is not for %s", strings.Join(m, ", "))
	}
	return cert, nil
}

// check returns the chain der as a certificate to serve, if its leaf is
// valid now, for the host name and for the server's key.
func (a *acmeIssuer) check(der [][]byte) (*tls.Certificate, error) {
	if len(der) == 0 {
		return nil, errors.New("no certificate")
	}
	leaf, err := x509.ParseCertificate(der[0])
	if err != nil {
		return nil, err
	}
	now := a.now()
	switch {
	case now.Before(leaf.NotBefore) || now.After(leaf.NotAfter):
		return nil, fmt.Errorf("the certificate is valid from %v to %v", leaf.NotBefore, leaf.NotAfter)
	case !a.key.PublicKey.Equal(leaf.PublicKey):
		return nil, errors.New("the certificate is not for the server's key")
	}
	if err := leaf.VerifyHostname(a.host); err != nil {
		return nil, err
	}
	return &tls.Certificate{Certificate: der, PrivateKey: a.key, Leaf: leaf}, nil
}

// account sets up the client's account key (made once, kept in the
// cache) and makes sure the account exists, agreeing to the terms of
// service (RFC 8555 §7.3).
func (a *acmeIssuer) account(ctx context.Context) error {
	if a.registered {
		return nil
	}
	if a.client.Key == nil {
		path := filepath.Join(a.cfg.CacheDir, accountKeyName)
		data, err := os.ReadFile(path)
		switch {
		case err == nil:
			block, _ := pem.Decode(data)
			if block == nil {
				return fmt.Errorf("ACME account key %s: no PEM block", path)
			}
			k, err := parseKey(block.Bytes)
			if err != nil {
				return fmt.Errorf("ACME account key %s: %w", path, err)
			}
			a.client.Key = k
		case os.IsNotExist(err):
			k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			if err != nil {
				return err
			}
			der, err := x509.MarshalECPrivateKey(k)
			if err != nil {
				return err
			}
			if err := renameio.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600); err != nil {
				return fmt.Errorf("ACME account key: %w", err)
			}
			a.client.Key = k
		default:
			return fmt.Errorf("ACME account key: %w", err)
		}
	}
	acct := &acme.Account{}
	if a.cfg.Email != "" {
		acct.Contact = []string{"mailto:" + a.cfg.Email}
	}
	if _, err := a.client.Register(ctx, acct, acme.AcceptTOS); err != nil && !errors.Is(err, acme.ErrAccountAlreadyExists) {
		return fmt.Errorf("ACME account: %w", err)
	}
	a.registered = true
	return nil
}

// parseKey parses a private key in PKCS #1, PKCS #8 or SEC 1 form, as
// autocert writes and reads them.
func parseKey(der []byte) (*ecdsa.PrivateKey, error) {
	if k, err := x509.ParseECPrivateKey(der); err == nil {
		return k, nil
	}
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, err
	}
	ek, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%T: want an ECDSA key", k)
	}
	return ek, nil
}

// order gets a new certificate for the server's key and every name (the
// host name and AltNames) or, when the CA refuses some alternative name,
// for the host name alone.
func (a *acmeIssuer) order(ctx context.Context) (*tls.Certificate, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	if err := a.account(ctx); err != nil {
		return nil, err
	}
	names := append([]string{a.host}, a.alt...)
	cert, err := a.orderNames(ctx, names)
	if err == nil || len(names) == 1 {
		return cert, err
	}
	a.log.Error("ACME: no certificate for every name; ordering one for the host name alone", "names", names, "err", err)
	return a.orderNames(ctx, names[:1])
}

// orderNames gets a certificate for names: an order, its authorizations
// by TLS-ALPN-01 (RFC 8737) or, when that fails and HTTPHandler is
// served, by HTTP-01 (RFC 8555 §8.3), each with a new order, as autocert
// tries them; then the certificate, kept in the cache.
func (a *acmeIssuer) orderNames(ctx context.Context, names []string) (*tls.Certificate, error) {
	types := []string{"tls-alpn-01"}
	if a.httpServed.Load() {
		types = append(types, "http-01")
	}
	var errs []error
	for _, typ := range types {
		o, err := a.authorize(ctx, typ, names)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", typ, err))
			continue
		}
		csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{DNSNames: names}, a.key)
		if err != nil {
			return nil, err
		}
		der, _, err := a.client.CreateCertFromOrder(ctx, o, csr, true)
		if err != nil {
			return nil, fmt.Errorf("ACME: finalizing the order: %w", err)
		}
		cert, err := a.check(der)
		if err != nil {
			return nil, fmt.Errorf("ACME: the certificate issued: %w", err)
		}
		if err := a.store(der); err != nil {
			a.log.Error("ACME: cannot keep the certificate in the cache", "err", err)
		}
		return cert, nil
	}
	return nil, errors.Join(errs...)
}

// authorize places an order for names and answers its challenges of
// type typ; it returns the order once ready.
func (a *acmeIssuer) authorize(ctx context.Context, typ string, names []string) (*acme.Order, error) {
	o, err := a.client.AuthorizeOrder(ctx, acme.DomainIDs(names...))
	if err != nil {
		return nil, err
	}
	for _, u := range o.AuthzURLs {
		z, err := a.client.GetAuthorization(ctx, u)
		if err != nil {
			return nil, err
		}
		if z.Status == acme.StatusValid {
			continue
		}
		if err := a.answer(ctx, z, typ); err != nil {
			// An authorization left pending counts against the
			// account's limits (RFC 8555 §7.5.2).
			a.client.RevokeAuthorization(ctx, z.URI)
			return nil, err
		}
	}
	return a.client.WaitOrder(ctx, o.URI)
}

// answer answers z's challenge of type typ and waits for its outcome.
func (a *acmeIssuer) answer(ctx context.Context, z *acme.Authorization, typ string) error {
	var chal *acme.Challenge
	for _, c := range z.Challenges {
		if c.Type == typ {
			chal = c
		}
	}
	if chal == nil {
		return fmt.Errorf("the CA offers no %s challenge", typ)
	}
	name := strings.ToLower(z.Identifier.Value)
	switch typ {
	case "tls-alpn-01":
		cert, err := a.client.TLSALPN01ChallengeCert(chal.Token, name)
		if err != nil {
			return err
		}
		a.mu.Lock()
		a.alpn[name] = cert
		a.mu.Unlock()
		defer func() {
			a.mu.Lock()
			delete(a.alpn, name)
			a.mu.Unlock()
		}()
	case "http-01":
		body, err := a.client.HTTP01ChallengeResponse(chal.Token)
		if err != nil {
			return err
		}
		path := a.client.HTTP01ChallengePath(chal.Token)
		a.mu.Lock()
		a.http[path] = body
		a.mu.Unlock()
		defer func() {
			a.mu.Lock()
			delete(a.http, path)
			a.mu.Unlock()
		}()
	}
	if _, err := a.client.Accept(ctx, chal); err != nil {
		return err
	}
	_, err := a.client.WaitAuthorization(ctx, z.URI)
	return err
}

// store keeps the certificate in the cache, as autocert does: the key,
// then the chain.
func (a *acmeIssuer) store(der [][]byte) error {
	kd, err := x509.MarshalECPrivateKey(a.key)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	pem.Encode(&buf, &pem.Block{Type: "EC PRIVATE KEY", Bytes: kd})
	for _, b := range der {
		pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: b})
	}
	return renameio.WriteFile(filepath.Join(a.cfg.CacheDir, a.host), buf.Bytes(), 0o600)
}
