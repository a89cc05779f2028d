// Package certs hands out the server's TLS certificate: one given in PEM
// files, or a self-signed one; and, with ACME (RFC 8555), the host
// name's certificate once it is obtained, the other serving until then,
// so that mail keeps flowing with opportunistic TLS while ACME cannot
// succeed yet (DNS not set up, port 443 not forwarded).
//
// The server has one key, made once in the state directory
// (SelfSignedDir/selfsigned.key) and kept: the self-signed certificate
// and every ACME certificate, at each renewal, are for that key. Its
// TLSA record (RFC 6698; 3 1 1: DANE-EE, SubjectPublicKeyInfo, SHA-256,
// as RFC 7671 §5.1 and RFC 7672 §3.1.1 advise) thus stays true across
// renewals, and DANE clients (RFC 7672) can authenticate the MX from
// the first start on, self-signed or not. A certificate given in files
// has its own key, and its own TLSA record.
package certs

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/google/renameio/v2"

	"elit.local/elit/dane"
	"elit.local/elit/dns"
)

// Config says where the certificate comes from.
type Config struct {
	// Hostname is the name every connection gets the certificate of.
	Hostname string
	// CertFile and KeyFile are a certificate chain and its key, PEM; when
	// empty, a self-signed certificate for the server's key is made in
	// SelfSignedDir, which keeps the key (selfsigned.key, made once).
	CertFile, KeyFile string
	SelfSignedDir     string
	ACME              ACME
	// Now is the clock (nil: time.Now).
	Now func() time.Time
}

// ACME is how the certificate is obtained by ACME. The challenges are
// answered by whoever serves HTTPHandler and ServeHTTPS.
type ACME struct {
	Enabled   bool
	Directory string // the directory URL
	Email     string // the account's contact
	// CAFile is the CA of the ACME server's HTTPS certificate ("" the
	// system's).
	CAFile string
	// AltNames are more names the ACME certificate is for, after the
	// host name: mta-sts.DOMAIN for the MTA-STS policy we serve (RFC
	// 8461 §3.3). When the CA cannot validate them (their DNS records
	// not published yet), the certificate is for the host name alone
	// and they are tried again every few hours.
	AltNames []string
	// CacheDir keeps the account key and the certificate (in
	// autocert's layout: acme_account+key, and a file named as the host
	// with the key and the chain, PEM).
	CacheDir string
}

// Source hands out the TLS certificate of the host name.
type Source struct {
	hostname string
	fromFile bool
	static   tls.Certificate
	key      *ecdsa.PrivateKey // the server's key (nil with files and no ACME)
	tlsa     dns.TLSA          // the record of the key the MX serves
	acme     *acmeIssuer
	leaf     atomic.Pointer[[]byte] // DER of the certificate in use
	now      func() time.Time
	log      *slog.Logger
}

// New loads the given certificate, or the self-signed one (making it the
// first time, or when it has expired, names another host or is not for
// the server's key), and sets up ACME when it is enabled (Obtain then
// gets the certificate).
func New(cfg Config, log *slog.Logger) (*Source, error) {
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	s := &Source{hostname: cfg.Hostname, fromFile: cfg.CertFile != "", now: now, log: log}
	var err error
	if cfg.CertFile == "" || cfg.ACME.Enabled {
		if s.key, err = LoadKey(cfg.SelfSignedDir, log); err != nil {
			return nil, err
		}
	}
	if cfg.CertFile != "" {
		s.static, err = tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("TLS certificate: %w", err)
		}
	} else if s.static, err = selfSigned(cfg.SelfSignedDir, cfg.Hostname, s.key, now(), log); err != nil {
		return nil, err
	}
	s.leaf.Store(&s.static.Certificate[0])
	leaf, err := x509.ParseCertificate(s.static.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("TLS certificate: %w", err)
	}
	s.tlsa = dane.Record(leaf, dane.UsageDANEEE, dane.SelectorSPKI, dane.MatchSHA256)
	if cfg.ACME.Enabled {
		// The ACME certificate, served once obtained, is for the
		// server's key: its record is the one to publish.
		if s.tlsa, err = KeyTLSA(&s.key.PublicKey); err != nil {
			return nil, err
		}
		if s.acme, err = newACMEIssuer(cfg.ACME, cfg.Hostname, s.key, now, log); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// GetCertificate is the tls.Config hook. Mail clients often send no server
// name, or an address: every connection gets the host name's certificate.
func (s *Source) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	// The ACME certificate once obtained, unless renewals failed until
	// it expired: then the fallback (the same key, unless given in files).
	if s.acme != nil {
		if cert := s.acme.cert.Load(); cert != nil && s.now().Before(cert.Leaf.NotAfter) {
			s.leaf.Store(&cert.Certificate[0])
			return cert, nil
		}
	}
	s.leaf.Store(&s.static.Certificate[0])
	return &s.static, nil
}

// TLSA is the TLSA record of the server's key (3 1 1: DANE-EE,
// SubjectPublicKeyInfo, SHA-256; RFC 7671 §5.1), to publish at
// _25._tcp.HOSTNAME (RFC 7672 §2.2.3): the key of the given file, or
// the server's key, which the self-signed and the ACME certificates
// share and renewals keep. With both a file and ACME it is the ACME
// certificate's.
func (s *Source) TLSA() dns.TLSA { return s.tlsa }

// CertDER is the leaf in use, for SCRAM's tls-server-end-point binding.
func (s *Source) CertDER() []byte { return *s.leaf.Load() }

// Info describes the TLS certificate served.
type Info struct {
	Source   string    `json:"source"` // acme, file or self-signed
	Names    []string  `json:"names"`
	Issuer   string    `json:"issuer"`
	NotAfter time.Time `json:"not_after"`
	// TLSA is the data of the TLSA record to publish at
	// _25._tcp.HOSTNAME ("3 1 1 <hex>", see Source.TLSA).
	TLSA string `json:"tlsa"`
	// With ACME: when the certificate is to be renewed, and the last
	// failed order (its error and time) since the last success.
	RenewAt       time.Time `json:"renew_at,omitzero"`
	ACMEError     string    `json:"acme_error,omitempty"`
	ACMEErrorTime time.Time `json:"acme_error_time,omitzero"`
}

// Info describes the certificate in use.
func (s *Source) Info() Info {
	ci := Info{Source: "self-signed", TLSA: s.tlsa.String()}
	switch {
	case s.acme != nil && s.acme.cert.Load() != nil:
		ci.Source = "acme"
	case s.fromFile:
		ci.Source = "file"
	}
	leaf, err := x509.ParseCertificate(s.CertDER())
	if err == nil {
		ci.Names, ci.Issuer, ci.NotAfter = leaf.DNSNames, leaf.Issuer.String(), leaf.NotAfter
	}
	if s.acme != nil {
		if ci.Source == "acme" && leaf != nil {
			ci.RenewAt = renewAt(leaf)
		}
		if f := s.acme.failure.Load(); f != nil {
			ci.ACMEError, ci.ACMEErrorTime = f.err, f.at
		}
	}
	return ci
}

// LoadKey returns the server's key, kept in dir/selfsigned.key (PKCS #8,
// PEM), making it the first time (ECDSA P-256). A key that cannot be
// read is an error, not a reason to make another: the published TLSA
// record names it.
func LoadKey(dir string, log *slog.Logger) (*ecdsa.PrivateKey, error) {
	key, err := ReadKey(dir)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return key, err
	}
	key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("TLS key: %w", err)
	}
	path := filepath.Join(dir, "selfsigned.key")
	if err := renameio.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return nil, fmt.Errorf("TLS key: %w", err)
	}
	log.Info("generated the server's TLS key; it stays across certificate renewals (publish its TLSA record)", "key", path)
	return key, nil
}

// ReadKey reads the server's key in dir (see LoadKey) without making it:
// an error wrapping fs.ErrNotExist when there is none yet.
func ReadKey(dir string) (*ecdsa.PrivateKey, error) {
	path := filepath.Join(dir, "selfsigned.key")
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("TLS key: %w", err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("TLS key %s: no PEM block", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("TLS key %s: %w", path, err)
	}
	key, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("TLS key %s: %T, want an ECDSA key", path, k)
	}
	return key, nil
}

// KeyTLSA is the 3 1 1 TLSA record of a public key (see Source.TLSA).
func KeyTLSA(pub crypto.PublicKey) (dns.TLSA, error) {
	spki, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return dns.TLSA{}, err
	}
	return dane.Record(&x509.Certificate{RawSubjectPublicKeyInfo: spki}, dane.UsageDANEEE, dane.SelectorSPKI, dane.MatchSHA256), nil
}

// FileTLSA is the 3 1 1 TLSA record of the first certificate of a PEM
// file (-tls-cert).
func FileTLSA(certFile string) (dns.TLSA, error) {
	data, err := os.ReadFile(certFile)
	if err != nil {
		return dns.TLSA{}, fmt.Errorf("TLS certificate: %w", err)
	}
	for {
		var block *pem.Block
		if block, data = pem.Decode(data); block == nil {
			return dns.TLSA{}, fmt.Errorf("TLS certificate %s: no certificate", certFile)
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		leaf, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return dns.TLSA{}, fmt.Errorf("TLS certificate %s: %w", certFile, err)
		}
		return dane.Record(leaf, dane.UsageDANEEE, dane.SelectorSPKI, dane.MatchSHA256), nil
	}
}

// selfSigned loads the self-signed certificate of dir, or makes it for
// key.
func selfSigned(dir, hostname string, key *ecdsa.PrivateKey, now time.Time, log *slog.Logger) (tls.Certificate, error) {
	certPath := filepath.Join(dir, "selfsigned.pem")
	if data, err := os.ReadFile(certPath); err == nil {
		if block, _ := pem.Decode(data); block != nil {
			leaf, _ := x509.ParseCertificate(block.Bytes)
			if leaf != nil && leaf.VerifyHostname(hostname) == nil && now.Before(leaf.NotAfter) && key.PublicKey.Equal(leaf.PublicKey) {
				return tls.Certificate{Certificate: [][]byte{block.Bytes}, PrivateKey: key, Leaf: leaf}, nil
			}
		}
	}
	der, err := selfSignedDER(hostname, key, now.Add(-time.Hour), now.AddDate(5, 0, 0))
	if err != nil {
		return tls.Certificate{}, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return tls.Certificate{}, err
	}
	if err := renameio.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return tls.Certificate{}, err
	}
	log.Warn("generated a self-signed TLS certificate; give -tls-cert and -tls-key for one clients can verify", "cert", certPath, "hostname", hostname)
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// selfSignedDER makes a self-signed certificate of hostname for key.
func selfSignedDER(hostname string, key *ecdsa.PrivateKey, notBefore, notAfter time.Time) ([]byte, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: hostname},
		DNSNames:              []string{hostname},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	return x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
}
