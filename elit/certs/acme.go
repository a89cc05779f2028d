package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"golang.org/x/crypto/acme"
	"golang.org/x/crypto/acme/autocert"
)

// setupACME makes the autocert manager of the host name, which keeps the
// account key and certificates in c.CacheDir (on /perm on the appliance).
func (s *Source) setupACME(c ACME) error {
	httpClient := http.DefaultClient
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return fmt.Errorf("-acme-ca-file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("-acme-ca-file %s: no certificate", c.CAFile)
		}
		httpClient = &http.Client{Timeout: time.Minute, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	}
	if err := os.MkdirAll(c.CacheDir, 0o700); err != nil {
		return fmt.Errorf("ACME cache: %w", err)
	}
	s.acme = &autocert.Manager{
		Prompt:     autocert.AcceptTOS,
		Cache:      autocert.DirCache(c.CacheDir),
		HostPolicy: autocert.HostWhitelist(s.hostname),
		Email:      c.Email,
		Client:     &acme.Client{DirectoryURL: c.Directory, HTTPClient: httpClient},
	}
	return nil
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

// HTTPHandler answers HTTP-01 challenges (RFC 8555 §8.3); without ACME it
// answers 404.
func (s *Source) HTTPHandler() http.Handler {
	if s.acme == nil {
		return http.NotFoundHandler()
	}
	challenges := s.acme.HTTPHandler(nil)
	// The host policy sees the Host header, which carries a port when
	// the challenge reaches us through a forward from another port.
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if host, _, err := net.SplitHostPort(r.Host); err == nil {
			r.Host = host
		}
		challenges.ServeHTTP(w, r)
	})
}

// ServeALPN answers TLS-ALPN-01 challenges (RFC 8737) on l until ctx
// ends: the handshake is the answer. It does nothing without ACME.
func (s *Source) ServeALPN(ctx context.Context, l net.Listener) {
	go func() {
		<-ctx.Done()
		l.Close()
	}()
	if s.acme == nil {
		return
	}
	cfg := s.acme.TLSConfig()
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

// Obtain gets the first ACME certificate, retrying with backoff until ctx
// ends; autocert renews it from then on. It does nothing without ACME.
func (s *Source) Obtain(ctx context.Context) {
	if s.acme == nil {
		return
	}
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
