// Package certs hands out the server's TLS certificate: one given in PEM
// files, or a self-signed one made once and kept; and, with ACME (RFC
// 8555, through autocert), the host name's certificate once it is
// obtained, the other serving until then, so that mail keeps flowing with
// opportunistic TLS while ACME cannot succeed yet (DNS not set up, port
// 443 not forwarded).
package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/google/renameio/v2"
	"golang.org/x/crypto/acme/autocert"
)

// Config says where the certificate comes from.
type Config struct {
	// Hostname is the name every connection gets the certificate of.
	Hostname string
	// CertFile and KeyFile are a certificate chain and its key, PEM; when
	// empty, a self-signed certificate is made once in SelfSignedDir.
	CertFile, KeyFile string
	SelfSignedDir     string
	ACME              ACME
}

// ACME is how the certificate is obtained by ACME. The challenges are
// answered by whoever serves HTTPHandler and ServeALPN.
type ACME struct {
	Enabled   bool
	Directory string // the directory URL
	Email     string // the account's contact
	// CAFile is the CA of the ACME server's HTTPS certificate ("" the
	// system's).
	CAFile string
	// CacheDir keeps the account key and the certificates.
	CacheDir string
}

// Source hands out the TLS certificate of the host name.
type Source struct {
	hostname string
	fromFile bool
	static   tls.Certificate
	acme     *autocert.Manager
	ready    atomic.Bool
	leaf     atomic.Pointer[[]byte] // DER of the certificate in use
	log      *slog.Logger
}

// New loads the given certificate, or the self-signed one (making it the
// first time, or when it has expired or names another host), and sets up
// ACME when it is enabled (Obtain then gets the certificate).
func New(cfg Config, log *slog.Logger) (*Source, error) {
	var static tls.Certificate
	var err error
	if cfg.CertFile != "" {
		static, err = tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("TLS certificate: %w", err)
		}
	} else if static, err = selfSigned(cfg.SelfSignedDir, cfg.Hostname, log); err != nil {
		return nil, err
	}
	s := &Source{hostname: cfg.Hostname, fromFile: cfg.CertFile != "", static: static, log: log}
	s.leaf.Store(&static.Certificate[0])
	if cfg.ACME.Enabled {
		if err := s.setupACME(cfg.ACME); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// GetCertificate is the tls.Config hook. Mail clients often send no server
// name, or an address: every connection gets the host name's certificate.
func (s *Source) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
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

// CertDER is the leaf in use, for SCRAM's tls-server-end-point binding.
func (s *Source) CertDER() []byte { return *s.leaf.Load() }

// Info describes the TLS certificate served.
type Info struct {
	Source   string    `json:"source"` // acme, file or self-signed
	Names    []string  `json:"names"`
	Issuer   string    `json:"issuer"`
	NotAfter time.Time `json:"not_after"`
}

// Info describes the certificate in use.
func (s *Source) Info() Info {
	ci := Info{Source: "self-signed"}
	switch {
	case s.ready.Load():
		ci.Source = "acme"
	case s.fromFile:
		ci.Source = "file"
	}
	if leaf, err := x509.ParseCertificate(s.CertDER()); err == nil {
		ci.Names, ci.Issuer, ci.NotAfter = leaf.DNSNames, leaf.Issuer.String(), leaf.NotAfter
	}
	return ci
}

// selfSigned loads the self-signed certificate of dir, or makes it.
func selfSigned(dir, hostname string, log *slog.Logger) (tls.Certificate, error) {
	certPath, keyPath := filepath.Join(dir, "selfsigned.pem"), filepath.Join(dir, "selfsigned.key")
	if cert, err := tls.LoadX509KeyPair(certPath, keyPath); err == nil {
		leaf, _ := x509.ParseCertificate(cert.Certificate[0])
		if leaf != nil && leaf.VerifyHostname(hostname) == nil && time.Now().Before(leaf.NotAfter) {
			return cert, nil
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: hostname},
		DNSNames:              []string{hostname},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(5, 0, 0),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return tls.Certificate{}, err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return tls.Certificate{}, err
	}
	if err := renameio.WriteFile(keyPath, keyPEM, 0o600); err != nil {
		return tls.Certificate{}, err
	}
	if err := renameio.WriteFile(certPath, certPEM, 0o644); err != nil {
		return tls.Certificate{}, err
	}
	log.Warn("generated a self-signed TLS certificate; give -tls-cert and -tls-key for one clients can verify", "cert", certPath, "hostname", hostname)
	return tls.X509KeyPair(certPEM, keyPEM)
}
