package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/acme"
	"golang.org/x/crypto/acme/autocert"
)

// certSource hands out the TLS certificate of the host name: an ACME one
// (RFC 8555) once it is obtained, else the given or self-signed one, so that
// mail keeps flowing with opportunistic TLS while ACME cannot succeed yet
// (DNS not set up, port 443 not forwarded).
type certSource struct {
	hostname string
	static   tls.Certificate
	acme     *autocert.Manager
	ready    atomic.Bool
	leaf     atomic.Pointer[[]byte] // DER of the certificate in use
	log      *slog.Logger
}

func newCertSource(hostname string, static tls.Certificate, log *slog.Logger) *certSource {
	s := &certSource{hostname: hostname, static: static, log: log}
	s.leaf.Store(&static.Certificate[0])
	return s
}

// GetCertificate is the tls.Config hook. Mail clients often send no server
// name, or an address: every connection gets the host name's certificate.
func (s *certSource) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if s.acme != nil && s.ready.Load() {
		cert, err := s.acme.GetCertificate(ecdsaHello(s.hostname))
		if err == nil {
			s.leaf.Store(&cert.Certificate[0])
			return cert, nil
		}
		s.log.Error("ACME certificate unavailable; using the fallback", "err", err)
	}
	return &s.static, nil
}

// ecdsaHello asks autocert for the host name's ECDSA certificate: one
// certificate for every client (autocert would otherwise get an RSA one,
// at handshake time, for a hello that does not list ECDSA).
func ecdsaHello(name string) *tls.ClientHelloInfo {
	return &tls.ClientHelloInfo{
		ServerName:       name,
		SignatureSchemes: []tls.SignatureScheme{tls.ECDSAWithP256AndSHA256},
		SupportedCurves:  []tls.CurveID{tls.CurveP256},
		CipherSuites:     []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_AES_128_GCM_SHA256},
	}
}

// info describes the certificate in use; fromFile says whether the
// fallback came from -tls-cert.
func (s *certSource) info(fromFile bool) certInfo {
	ci := certInfo{Source: "self-signed"}
	switch {
	case s.ready.Load():
		ci.Source = "acme"
	case fromFile:
		ci.Source = "file"
	}
	if leaf, err := x509.ParseCertificate(s.CertDER()); err == nil {
		ci.Names, ci.Issuer, ci.NotAfter = leaf.DNSNames, leaf.Issuer.String(), leaf.NotAfter
	}
	return ci
}

// CertDER is the leaf in use, for SCRAM's tls-server-end-point binding.
func (s *certSource) CertDER() []byte { return *s.leaf.Load() }

// acmeConfig is how elit gets its certificate by ACME.
type acmeConfig struct {
	directory, email, caFile, tlsAddr, httpAddr, cacheDir string
}

// startACME obtains and renews the host name's certificate with autocert,
// answering TLS-ALPN-01 (RFC 8737) on tlsAddr and HTTP-01 (RFC 8555 §8.3)
// on httpAddr. The account key and certificates are kept in cacheDir (on
// /perm on the appliance).
func (s *certSource) startACME(ctx context.Context, c acmeConfig) error {
	httpClient := http.DefaultClient
	if c.caFile != "" {
		pem, err := os.ReadFile(c.caFile)
		if err != nil {
			return configErr("-acme-ca-file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return configErr("-acme-ca-file %s: no certificate", c.caFile)
		}
		httpClient = &http.Client{Timeout: time.Minute, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	}
	if err := os.MkdirAll(c.cacheDir, 0o700); err != nil {
		return configErr("ACME cache: %w", err)
	}
	m := &autocert.Manager{
		Prompt:     autocert.AcceptTOS,
		Cache:      autocert.DirCache(c.cacheDir),
		HostPolicy: autocert.HostWhitelist(s.hostname),
		Email:      c.email,
		Client:     &acme.Client{DirectoryURL: c.directory, HTTPClient: httpClient},
	}
	s.acme = m
	if c.tlsAddr == "" && c.httpAddr == "" {
		return configErr("-acme needs -acme-tls-addr or -acme-http-addr to answer the challenge")
	}
	if c.httpAddr != "" {
		challenges := m.HTTPHandler(nil)
		// The host policy sees the Host header, which carries a port when
		// the challenge reaches us through a forward from another port.
		handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if host, _, err := net.SplitHostPort(r.Host); err == nil {
				r.Host = host
			}
			challenges.ServeHTTP(w, r)
		})
		if _, err := listenHTTP(ctx, c.httpAddr, &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}); err != nil {
			return fmt.Errorf("ACME HTTP-01: %w", err)
		}
	}
	if c.tlsAddr != "" {
		l, err := net.Listen("tcp", c.tlsAddr)
		if err != nil {
			return fmt.Errorf("ACME TLS-ALPN-01: %w", err)
		}
		go serveALPN(ctx, l, m.TLSConfig())
	}
	go s.obtain(ctx)
	return nil
}

// serveALPN answers TLS-ALPN-01 challenges: the handshake is the answer.
func serveALPN(ctx context.Context, l net.Listener, cfg *tls.Config) {
	go func() {
		<-ctx.Done()
		l.Close()
	}()
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
			continue
		}
		go func() {
			defer c.Close()
			c.SetDeadline(time.Now().Add(30 * time.Second))
			tls.Server(c, cfg).HandshakeContext(ctx)
		}()
	}
}

// obtain gets the first certificate, retrying with backoff; autocert
// renews it from then on.
func (s *certSource) obtain(ctx context.Context) {
	// autocert keeps a failed attempt for a minute before it tries again.
	wait := 90 * time.Second
	for ctx.Err() == nil {
		cert, err := s.acme.GetCertificate(ecdsaHello(s.hostname))
		if err == nil {
			s.ready.Store(true)
			s.leaf.Store(&cert.Certificate[0])
			if cert.Leaf != nil {
				s.log.Info("ACME certificate obtained", "hostname", s.hostname, "issuer", cert.Leaf.Issuer.String(), "expires", cert.Leaf.NotAfter)
			} else {
				s.log.Info("ACME certificate obtained", "hostname", s.hostname)
			}
			return
		}
		s.log.Error("ACME: no certificate yet; serving the fallback", "hostname", s.hostname, "err", err, "retry_in", wait)
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Hour)
	}
}

func acmeCacheDir(state string) string { return filepath.Join(state, "acme") }
