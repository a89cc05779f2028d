package dkim

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
)

// DefaultRSABits is the size of the RSA keys GenerateKey makes unless
// told otherwise (RFC 8301 §3.2: signers SHOULD use at least 2048 bits).
const DefaultRSABits = 2048

// GenerateKey makes a signing key, algo "rsa" (bits: 0 for
// DefaultRSABits, else 1024 to 4096) or "ed25519" (bits ignored), and
// returns the private key as PEM (PKCS #8, "PRIVATE KEY") and the value
// of the TXT record to publish at selector._domainkey.domain.
func GenerateKey(algo string, bits int) (privatePEM []byte, record string, err error) {
	var key crypto.Signer
	switch algo {
	case "rsa":
		if bits == 0 {
			bits = DefaultRSABits
		}
		if bits < MinRSABits || bits > 4096 {
			return nil, "", fmt.Errorf("dkim: rsa key of %d bits (%d to 4096)", bits, MinRSABits)
		}
		key, err = rsa.GenerateKey(rand.Reader, bits)
	case "ed25519":
		_, key, err = ed25519.GenerateKey(rand.Reader)
	default:
		return nil, "", fmt.Errorf("dkim: unknown key algorithm %q (rsa or ed25519)", algo)
	}
	if err != nil {
		return nil, "", fmt.Errorf("dkim: generate key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, "", fmt.Errorf("dkim: %w", err)
	}
	record, err = KeyRecord(key.Public())
	if err != nil {
		return nil, "", err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), record, nil
}

// KeyRecord returns the TXT record value that publishes pub (RFC 6376
// §3.6.1): "v=DKIM1; k=rsa; p=" and the DER SubjectPublicKeyInfo, or
// "v=DKIM1; k=ed25519; p=" and the 32 octets of the key (RFC 8463 §4).
func KeyRecord(pub crypto.PublicKey) (string, error) {
	switch pub := pub.(type) {
	case *rsa.PublicKey:
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			return "", fmt.Errorf("dkim: %w", err)
		}
		return "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(der), nil
	case ed25519.PublicKey:
		return "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(pub), nil
	}
	return "", fmt.Errorf("dkim: unsupported public key %T", pub)
}

// ParsePrivateKey reads a PEM private key: "RSA PRIVATE KEY" (PKCS #1) or
// "PRIVATE KEY" (PKCS #8, RSA or Ed25519). The first PEM block is used.
func ParsePrivateKey(data []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("dkim: no PEM block in the private key")
	}
	switch block.Type {
	case "RSA PRIVATE KEY":
		k, err := x509.ParsePKCS1PrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("dkim: private key: %w", err)
		}
		return k, nil
	case "PRIVATE KEY":
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("dkim: private key: %w", err)
		}
		switch k := k.(type) {
		case *rsa.PrivateKey:
			return k, nil
		case ed25519.PrivateKey:
			return k, nil
		}
		return nil, fmt.Errorf("dkim: private key of type %T (rsa or ed25519)", k)
	}
	return nil, fmt.Errorf("dkim: PEM block %q is not a private key", block.Type)
}
