package dane

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"testing"
	"time"
)

// pki is a CA, an intermediate it signs and a server certificate the
// intermediate signs, for mx.example.com; other is another CA's server
// certificate for the same name.
type pki struct {
	root, inter, leaf, other *x509.Certificate
	leafKey                  *ecdsa.PrivateKey
}

var testNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func newCert(t testing.TB, tmpl *x509.Certificate, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl.SerialNumber = serial
	if tmpl.NotBefore.IsZero() {
		tmpl.NotBefore, tmpl.NotAfter = testNow.Add(-24*time.Hour), testNow.Add(90*24*time.Hour)
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c, key
}

func caTemplate(name string) *x509.Certificate {
	return &x509.Certificate{Subject: pkix.Name{CommonName: name}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
}

func leafTemplate(names ...string) *x509.Certificate {
	return &x509.Certificate{Subject: pkix.Name{CommonName: names[0]}, DNSNames: names,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
}

func newPKI(t testing.TB) *pki {
	t.Helper()
	root, rootKey := newCert(t, caTemplate("Test Root"), nil, nil)
	inter, interKey := newCert(t, caTemplate("Test Intermediate"), root, rootKey)
	leaf, leafKey := newCert(t, leafTemplate("mx.example.com"), inter, interKey)
	otherRoot, otherKey := newCert(t, caTemplate("Other Root"), nil, nil)
	other, _ := newCert(t, leafTemplate("mx.example.com"), otherRoot, otherKey)
	return &pki{root: root, inter: inter, leaf: leaf, other: other, leafKey: leafKey}
}
