package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"
)

// The appliance's TLS key and certificate are made once, for an instance
// (or next to an image built without one), and are inputs of every build:
// gokrazy serves them on its update endpoint (HTTPS, port 8443) and elit
// on SMTP and its status page (port 8025). elit-image pins the key: it
// talks to the appliance only when the key the appliance shows is the one
// it knows. A pin is the SHA-256 of the key's SubjectPublicKeyInfo, in
// curl's --pinnedpubkey form (sha256//BASE64), so it survives a new
// certificate for the same key.

// makeKeyPair makes an ECDSA P-256 key and a self-signed certificate for
// hostname, PEM-encoded. The certificate does not expire (RFC 5280's
// 99991231235959Z): nobody verifies it against a CA; the key is pinned.
func makeKeyPair(hostname string) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: hostname},
		DNSNames:              []string{hostname},
		NotBefore:             time.Now().Add(-time.Hour).UTC().Truncate(time.Second),
		NotAfter:              time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), nil
}

// keyPair is a certificate and its key, PEM, as read from their files.
type keyPair struct {
	certPEM, keyPEM []byte
}

// readKeyPair reads a certificate and key and checks that they belong
// together.
func readKeyPair(certFile, keyFile string) (*keyPair, error) {
	c, err := os.ReadFile(certFile)
	if err != nil {
		return nil, err
	}
	k, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, err
	}
	if _, err := tls.X509KeyPair(c, k); err != nil {
		return nil, fmt.Errorf("%s and %s: %w", certFile, keyFile, err)
	}
	return &keyPair{certPEM: c, keyPEM: k}, nil
}

// pinOf is the pin of the first certificate in a PEM file's contents.
func pinOf(certPEM []byte) (string, error) {
	block, _ := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		return "", errors.New("no PEM certificate")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return "", err
	}
	return spkiPin(cert), nil
}

// spkiPin is the pin of a certificate's key.
func spkiPin(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return "sha256//" + base64.StdEncoding.EncodeToString(sum[:])
}

// checkPin says whether s is a pin as spkiPin writes it.
func checkPin(s string) error {
	b, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(s, "sha256//"))
	if !strings.HasPrefix(s, "sha256//") || err != nil || len(b) != sha256.Size {
		return fmt.Errorf("pin %q: want sha256// and the base64 SHA-256 of the key (as elit-image pin prints it)", s)
	}
	return nil
}

// errPinMismatch is a server that showed a key other than the pinned ones:
// nothing was sent to it.
var errPinMismatch = errors.New("the appliance's TLS key is not the pinned one")

// pinnedTLS is a TLS client configuration that accepts a server only when
// its certificate's key is one of pins: the check runs during the
// handshake, before a request (or a password) is sent. The name and the
// issuer are not checked: the appliance's certificate is self-signed.
func pinnedTLS(pins []string) *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: true, // replaced by VerifyConnection: the pin
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errPinMismatch
			}
			if got := spkiPin(cs.PeerCertificates[0]); !slices.Contains(pins, got) {
				return fmt.Errorf("%w: it shows %s (if that is expected, elit-image pin shows the key and pins it)", errPinMismatch, got)
			}
			return nil
		},
	}
}

// newTransport is an HTTP transport that never reuses a connection (an
// appliance reboots under us: a request on a pooled connection that died
// with the old system fails) and, with pins, talks TLS to pinned keys only.
func newTransport(pins []string) *http.Transport {
	t := &http.Transport{DisableKeepAlives: true, Proxy: nil, ForceAttemptHTTP2: false}
	if len(pins) > 0 {
		t.TLSClientConfig = pinnedTLS(pins)
	}
	return t
}
