package dkim

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzVerify: Verify takes any message without panicking, and never
// passes a signature over content it does not cover.
func FuzzVerify(f *testing.F) {
	ss := testSigners(f)
	for _, s := range []*Signer{ss["rsa"], ss["ed25519"]} {
		field, err := s.Sign(strings.NewReader(testMessage))
		if err != nil {
			f.Fatal(err)
		}
		f.Add([]byte(field + testMessage))
		f.Add([]byte(field + strings.Replace(testMessage, "lost", "won", 1)))
	}
	f.Add(readFile(f, filepath.Join(rfc8463, "signed.eml")))
	f.Add([]byte(crlf(string(readFile(f, filepath.Join(rfc8463, "signed.eml"))))))
	f.Add([]byte("DKIM-Signature: v=1; a=rsa-sha256; d=example.org; s=rsa; h=from; bh=; b=\r\n\r\n"))
	f.Add([]byte("DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed; d=example.org; s=ed; l=3; h=from:from; bh=AAAA; b=AAAA\r\nFrom: a\r\n\r\nbody"))
	f.Add([]byte(""))
	z := testZone(f)
	for name, rec := range rfc8463ZoneOf(f) {
		z[name] = rec
	}
	resolver := zone(z)
	f.Fuzz(func(t *testing.T, msg []byte) {
		res, err := Verify(context.Background(), resolver, strings.NewReader(string(msg)))
		if err != nil {
			return
		}
		for _, r := range res {
			if r.Status == "" {
				t.Fatalf("no status: %+v", r)
			}
			if r.Status == Pass && (r.Sig == nil || r.Err != nil) {
				t.Fatalf("pass without a signature: %+v", r)
			}
		}
	})
}
