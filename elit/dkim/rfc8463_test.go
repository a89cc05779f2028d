package dkim

import (
	"bufio"
	"context"
	"crypto"
	"crypto/ed25519"
	"encoding/base64"
	"path/filepath"
	"strings"
	"testing"
)

var rfc8463 = filepath.Join(oracleDir, "dkim-rfc8463")

// rfc8463Zone reads the example's key records (dns.txt: name TXT "value").
func rfc8463Zone(t *testing.T) map[string]string { return rfc8463ZoneOf(t) }

func rfc8463ZoneOf(t testing.TB) map[string]string {
	records := map[string]string{}
	for _, line := range strings.Split(string(readFile(t, filepath.Join(rfc8463, "dns.txt"))), "\n") {
		if line == "" || strings.HasPrefix(line, ";") {
			continue
		}
		name, rest, ok := strings.Cut(line, " TXT ")
		if !ok {
			t.Fatalf("dns.txt: %q", line)
		}
		records[strings.TrimSuffix(name, ".")] = strings.Trim(rest, `"`)
	}
	return records
}

// TestRFC8463Verify: both signatures of the RFC 8463 Appendix A example
// (ed25519-sha256 and rsa-sha256 on one message) verify with the
// records of A.2.
func TestRFC8463Verify(t *testing.T) {
	msg := crlf(string(readFile(t, filepath.Join(rfc8463, "signed.eml"))))
	res, err := Verify(context.Background(), zone(rfc8463Zone(t)), strings.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	want := []struct{ alg, sel string }{{Ed25519SHA256, "brisbane"}, {RSASHA256, "test"}}
	if len(res) != len(want) {
		t.Fatalf("%d results, want %d", len(res), len(want))
	}
	for i, w := range want {
		r := res[i]
		if r.Status != Pass || r.Algorithm != w.alg || r.Selector != w.sel || r.Domain != "football.example.com" {
			t.Errorf("signature %d: %s %s s=%s d=%s (%v), want pass %s s=%s", i, r.Status, r.Algorithm, r.Selector, r.Domain, r.Err, w.alg, w.sel)
		}
		if r.Identity != "@football.example.com" || len(r.HeaderB) < 8 || !strings.HasPrefix(r.Sig.BString, r.HeaderB) {
			t.Errorf("signature %d: i=%s header.b=%s", i, r.Identity, r.HeaderB)
		}
	}
}

// TestRFC8463Sign reproduces the example's b= values from its keys and
// header: the example's DKIM-Signature fields with b= emptied are what a
// signer hashes, and both algorithms are deterministic (Ed25519, and
// RSASSA-PKCS1-v1_5), so our header hash and signing must give the same
// octets. Our Signer, with the example's clock, canonicalization and
// fields, must also give the same bh= and a signature that verifies.
func TestRFC8463Sign(t *testing.T) {
	msg := crlf(string(readFile(t, filepath.Join(rfc8463, "signed.eml"))))
	hdr, _, err := ParseHeader([]byte(msg))
	if err != nil {
		t.Fatal(err)
	}
	seed, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(readFile(t, filepath.Join(rfc8463, "brisbane.ed25519.seed.b64")))))
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]crypto.Signer{
		"brisbane": ed25519.NewKeyFromSeed(seed),
		"test":     loadKey(t, filepath.Join("..", rfc8463, "test.rsa.pem")),
	}
	// The message without the signatures: what was signed.
	var body []Field
	for _, f := range hdr {
		if !f.Is("DKIM-Signature") {
			body = append(body, f)
		}
	}
	for _, f := range hdr {
		if !f.Is("DKIM-Signature") {
			continue
		}
		sig, err := ParseSignature(f.Value())
		if err != nil {
			t.Fatal(err)
		}
		digest := HeaderHash(sig.HeaderCanon, body, sig.Headers, f.Raw)
		b, err := SignDigest(keys[sig.Selector], digest)
		if err != nil {
			t.Fatal(err)
		}
		if got := base64.StdEncoding.EncodeToString(b); got != sig.BString {
			t.Errorf("s=%s: b=%s\nwant %s", sig.Selector, got, sig.BString)
		}
	}

	unsigned := crlf(string(readFile(t, filepath.Join(rfc8463, "unsigned.eml"))))
	for sel, k := range keys {
		s := &Signer{Domain: "football.example.com", Selector: sel, Key: k,
			HeaderCanon: Simple, BodyCanon: Simple, Identity: "@football.example.com",
			Headers: []string{"from", "to", "subject", "date", "message-id"}, Oversign: []string{"from", "subject", "date"},
			Now: fixed(unixTime(1518460054))}
		field, err := s.Sign(strings.NewReader(unsigned))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(strings.ReplaceAll(field, "\r\n ", ""), "bh=4bLNXImK9drULnmePzZNEBleUanJCX5PIsDIFoH4KTQ=;") {
			t.Errorf("s=%s: %s: not the example's bh=", sel, field)
		}
		res, err := Verify(context.Background(), zone(rfc8463Zone(t)), strings.NewReader(field+unsigned))
		if err != nil || len(res) != 1 || res[0].Status != Pass {
			t.Errorf("s=%s: our signature of the example: %+v %v", sel, res, err)
		}
		// The field parses back as the header we meant.
		h, err := ReadHeader(bufio.NewReader(strings.NewReader(field + "\r\n")))
		if err != nil || len(h) != 1 {
			t.Fatalf("%q: %v", field, err)
		}
	}
}
