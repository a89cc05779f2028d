package dkim

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"time"
)

const testMessage = "From: Din <din@example.org>\r\n" +
	"To: Romain <romain@example.com>, hannes@example.net\r\n" +
	"Subject: Is dinner ready?\r\n" +
	"Date: Fri, 11 Jul 2003 21:00:37 -0700\r\n" +
	"Message-ID: <20030712040037.46341.5F8J@example.org>\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: text/plain; charset=utf-8\r\n" +
	"X-Unsigned: whatever\r\n" +
	"\r\n" +
	"Hi.  \r\n" +
	"\r\n" +
	"We lost the game.\tAre you hungry yet?\r\n" +
	"\r\n" +
	"\r\n"

func testSigners(t testing.TB) map[string]*Signer {
	return map[string]*Signer{
		"rsa":     {Domain: "example.org", Selector: "rsa", Key: loadKey(t, "rsa2048.pem")},
		"ed25519": {Domain: "example.org", Selector: "ed", Key: loadKey(t, "ed25519.pem")},
	}
}

func testZone(t testing.TB) map[string]string {
	return map[string]string{
		"rsa._domainkey.example.org": record(t, loadKey(t, "rsa2048.pem")),
		"ed._domainkey.example.org":  record(t, loadKey(t, "ed25519.pem")),
	}
}

// TestSignVerify: messages signed by us, with each key and
// canonicalization, verify; the field is folded to 78 columns and signs
// what it should.
func TestSignVerify(t *testing.T) {
	now := unixTime(1_800_000_000)
	for name, s := range testSigners(t) {
		for _, c := range [][2]Canon{{Relaxed, Relaxed}, {Relaxed, Simple}, {Simple, Relaxed}, {Simple, Simple}} {
			t.Run(fmt.Sprintf("%s/%s-%s", name, c[0], c[1]), func(t *testing.T) {
				s := *s
				s.HeaderCanon, s.BodyCanon = c[0], c[1]
				s.Now = fixed(now)
				s.Expiration = 24 * time.Hour
				field, err := s.Sign(strings.NewReader(testMessage))
				if err != nil {
					t.Fatal(err)
				}
				for _, line := range strings.Split(strings.TrimSuffix(field, "\r\n"), "\r\n") {
					if len(line) > MaxLineLength {
						t.Errorf("line of %d characters: %q", len(line), line)
					}
				}
				v := &Verifier{Resolver: zone(testZone(t)), Now: fixed(now.Add(time.Hour))}
				res, err := v.Verify(context.Background(), strings.NewReader(field+testMessage))
				if err != nil {
					t.Fatal(err)
				}
				if len(res) != 1 || res[0].Status != Pass {
					t.Fatalf("%+v\n%s", res, field)
				}
				sig := res[0].Sig
				wantH := "from:from:to:subject:date:message-id:mime-version:content-type"
				if got := strings.Join(sig.Headers, ":"); got != wantH {
					t.Errorf("h=%s, want %s", got, wantH)
				}
				if sig.Timestamp != now.Unix() || sig.Expiration != now.Unix()+86400 {
					t.Errorf("t=%d x=%d", sig.Timestamp, sig.Expiration)
				}
			})
		}
	}
}

// TestSignSeveral: one pass gives a signature per key (RFC 8463 §6),
// each verifying on the message that carries both.
func TestSignSeveral(t *testing.T) {
	ss := testSigners(t)
	fields, err := Sign(strings.NewReader(testMessage), ss["rsa"], ss["ed25519"])
	if err != nil {
		t.Fatal(err)
	}
	res, err := Verify(context.Background(), zone(testZone(t)), strings.NewReader(fields[0]+fields[1]+testMessage))
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 2 || res[0].Status != Pass || res[1].Status != Pass || res[0].Algorithm != RSASHA256 || res[1].Algorithm != Ed25519SHA256 {
		t.Fatalf("%+v", res)
	}
}

func TestSignRefuses(t *testing.T) {
	ss := testSigners(t)
	cases := []struct {
		name string
		s    Signer
		msg  string
	}{
		{"no From", *ss["rsa"], "To: a@example.com\r\n\r\nbody\r\n"},
		{"bad domain", Signer{Domain: "exa mple.org", Selector: "s", Key: ss["rsa"].Key}, testMessage},
		{"bad selector", Signer{Domain: "example.org", Selector: "s;", Key: ss["rsa"].Key}, testMessage},
		{"no key", Signer{Domain: "example.org", Selector: "s"}, testMessage},
		{"identity outside", Signer{Domain: "example.org", Selector: "s", Key: ss["rsa"].Key, Identity: "u@example.com"}, testMessage},
		{"identity without @", Signer{Domain: "example.org", Selector: "s", Key: ss["rsa"].Key, Identity: "example.org"}, testMessage},
		{"small key", Signer{Domain: "example.org", Selector: "s", Key: rsaKey(t, 512)}, testMessage},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if f, err := c.s.Sign(strings.NewReader(c.msg)); err == nil {
				t.Errorf("signed: %s", f)
			}
		})
	}
}

func TestSignedNames(t *testing.T) {
	hdr, _, err := ParseHeader([]byte("Received: a\r\nFrom: x\r\nTo: y\r\nto: z\r\nReceived: b\r\n\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		names, over []string
		want        string
	}{
		{DefaultHeaders(), []string{"From"}, "from:from:to:to"},
		{[]string{"To", "Received", "Subject"}, []string{}, "to:to:received:received"},
		{[]string{"To"}, []string{"Subject", "from"}, "to:to:subject:from:from"},
	}
	for _, c := range cases {
		if got := strings.Join(SignedNames(hdr, c.names, c.over), ":"); got != c.want {
			t.Errorf("%v %v: %s, want %s", c.names, c.over, got, c.want)
		}
	}
}

// TestDkimpyVerifiesOurs: the outside judge, dkimpy, verifies what we
// sign, for each key type and canonicalization, and both signatures of a
// message signed with two keys.
func TestDkimpyVerifiesOurs(t *testing.T) {
	const script = pyDNS + `
msg = base64.b64decode(inp['msg'])
d = dkim.DKIM(msg)
print(' '.join('pass' if d.verify(idx=i, dnsfunc=dnsfunc) else 'fail' for i in range(inp['n'])))
`
	ss := testSigners(t)
	for _, c := range [][2]Canon{{Relaxed, Relaxed}, {Simple, Simple}, {Relaxed, Simple}, {Simple, Relaxed}} {
		for _, name := range []string{"rsa", "ed25519"} {
			t.Run(fmt.Sprintf("%s/%s-%s", name, c[0], c[1]), func(t *testing.T) {
				s := *ss[name]
				s.HeaderCanon, s.BodyCanon = c[0], c[1]
				field, err := s.Sign(strings.NewReader(testMessage))
				if err != nil {
					t.Fatal(err)
				}
				out := python(t, script, map[string]any{"msg": []byte(field + testMessage), "dns": testZone(t), "n": 1})
				if strings.TrimSpace(out) != "pass" {
					t.Errorf("dkimpy: %s\n%s", out, field)
				}
			})
		}
	}
	t.Run("both", func(t *testing.T) {
		fields, err := Sign(strings.NewReader(testMessage), ss["rsa"], ss["ed25519"])
		if err != nil {
			t.Fatal(err)
		}
		out := python(t, script, map[string]any{"msg": []byte(fields[0] + fields[1] + testMessage), "dns": testZone(t), "n": 2})
		if strings.TrimSpace(out) != "pass pass" {
			t.Errorf("dkimpy: %s", out)
		}
	})
}

// TestOursVerifiesDkimpy: what dkimpy signs, with keys the test gives it,
// verifies with ours.
func TestOursVerifiesDkimpy(t *testing.T) {
	const script = `
import sys, json, base64, dkim
inp = json.load(sys.stdin)
sig = dkim.sign(base64.b64decode(inp['msg']), inp['sel'].encode(), b'example.org', inp['key'].encode(),
    canonicalize=(inp['hc'].encode(), inp['bc'].encode()), signature_algorithm=inp['alg'].encode(),
    include_headers=[b'from', b'to', b'subject', b'date', b'message-id'])
sys.stdout.write(sig.decode())
`
	ss := testSigners(t)
	edSeed := base64.StdEncoding.EncodeToString(ss["ed25519"].Key.(ed25519.PrivateKey).Seed())
	keys := map[string][3]string{
		"rsa":     {"rsa", string(readFile(t, "testdata/rsa2048.pem")), RSASHA256},
		"ed25519": {"ed", edSeed, Ed25519SHA256},
	}
	for _, c := range [][2]Canon{{Relaxed, Relaxed}, {Simple, Simple}, {Relaxed, Simple}} {
		for name, k := range keys {
			t.Run(fmt.Sprintf("%s/%s-%s", name, c[0], c[1]), func(t *testing.T) {
				field := python(t, script, map[string]any{"msg": []byte(testMessage), "sel": k[0], "key": k[1],
					"hc": c[0].String(), "bc": c[1].String(), "alg": k[2]})
				res, err := Verify(context.Background(), zone(testZone(t)), strings.NewReader(field+testMessage))
				if err != nil {
					t.Fatal(err)
				}
				if len(res) != 1 || res[0].Status != Pass || res[0].Algorithm != k[2] {
					t.Errorf("%+v\n%s", res, field)
				}
			})
		}
	}
}

var _ crypto.Signer = ed25519.PrivateKey(nil)
