//go:debug rsa1024min=0

package dkim

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"strings"
	"testing"
)

// rsaKey makes an RSA key of any size: the go:debug line above lets
// crypto/rsa make the small ones the tests need to show refused.
func rsaKey(t testing.TB, bits int) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestGenerateKey(t *testing.T) {
	cases := []struct {
		algo string
		bits int
		want string
		size int
	}{
		{"rsa", 0, "v=DKIM1; k=rsa; p=", 2048},
		{"rsa", 1024, "v=DKIM1; k=rsa; p=", 1024},
		{"ed25519", 0, "v=DKIM1; k=ed25519; p=", 256},
	}
	for _, c := range cases {
		pem, rec, err := GenerateKey(c.algo, c.bits)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(string(pem), "-----BEGIN PRIVATE KEY-----\n") || !strings.HasPrefix(rec, c.want) {
			t.Errorf("%s: %s\n%s", c.algo, pem, rec)
		}
		key, err := ParsePrivateKey(pem)
		if err != nil {
			t.Fatal(err)
		}
		k, err := ParseKey(rec)
		if err != nil {
			t.Fatal(err)
		}
		if k.Bits() != c.size || k.Type != c.algo {
			t.Errorf("%s: %d bits, k=%s", c.algo, k.Bits(), k.Type)
		}
		if again, _ := KeyRecord(key.Public()); again != rec {
			t.Errorf("%s: record %s, then %s", c.algo, rec, again)
		}
	}
	for _, bad := range []struct {
		algo string
		bits int
	}{{"rsa", 512}, {"rsa", 8192}, {"dsa", 0}} {
		if _, _, err := GenerateKey(bad.algo, bad.bits); err == nil {
			t.Errorf("%s %d: no error", bad.algo, bad.bits)
		}
	}
}

func TestParsePrivateKey(t *testing.T) {
	for _, c := range []struct {
		file string
		ok   bool
	}{{"rsa2048.pem", true}, {"rsa2048-pkcs1.pem", true}, {"ed25519.pem", true}} {
		k, err := ParsePrivateKey(readFile(t, "testdata/"+c.file))
		if err != nil {
			t.Errorf("%s: %v", c.file, err)
			continue
		}
		switch k.(type) {
		case *rsa.PrivateKey, ed25519.PrivateKey:
		default:
			t.Errorf("%s: %T", c.file, k)
		}
	}
	for _, bad := range []string{"", "not pem", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
		"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"} {
		if _, err := ParsePrivateKey([]byte(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}
