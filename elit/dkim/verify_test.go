package dkim

import (
	"context"
	"crypto"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"elit.local/elit/dns"
)

// bodyHash returns the bh= of msg's body.
func bodyHash(t testing.TB, c Canon, msg string) string {
	t.Helper()
	_, off, err := ParseHeader([]byte(msg))
	if err != nil {
		t.Fatal(err)
	}
	h := NewBodyHasher(c, sha256.New(), -1)
	h.Write([]byte(msg[off:]))
	return base64.StdEncoding.EncodeToString(h.Sum())
}

// craft signs msg with key as a signer writing exactly tags (all but
// b=, which it appends) would: the table's way to make signatures our
// Signer refuses to make.
func craft(t testing.TB, key crypto.Signer, tags, msg string) string {
	t.Helper()
	hdr, _, err := ParseHeader([]byte(msg))
	if err != nil {
		t.Fatal(err)
	}
	field := "DKIM-Signature: " + tags + " b="
	tag := func(name string) string { // tags may be broken: no ParseTagList
		_, v, _ := strings.Cut(" "+tags, " "+name+"=")
		v, _, _ = strings.Cut(v, ";")
		return v
	}
	hc, _, _ := ParseCanonicalization(tag("c"))
	h := tag("h")
	digest := HeaderHash(hc, hdr, strings.Split(h, ":"), []byte(field))
	b, err := key.Sign(nil, digest, crypto.SHA256)
	if err != nil {
		b, err = SignDigest(key, digest)
	}
	if err != nil {
		t.Fatal(err)
	}
	return field + base64.StdEncoding.EncodeToString(b) + "\r\n"
}

// TestVerifyBroken: a table of signatures that must not pass, and what
// each gives instead, plus the l= case, which passes for the part signed.
func TestVerifyBroken(t *testing.T) {
	now := unixTime(1_800_000_000)
	ss := testSigners(t)
	rsaK, edK := ss["rsa"].Key, ss["ed25519"].Key
	small := rsaKey(t, 512)
	sign := func(s *Signer, msg string) string {
		s.Now = fixed(now)
		f, err := s.Sign(strings.NewReader(msg))
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	good := sign(ss["rsa"], testMessage)
	bh := bodyHash(t, Relaxed, testMessage)
	std := "v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.org; s=rsa; t=1800000000; h=from:to:subject; bh=" + bh + ";"
	zoneWith := func(extra map[string]string) map[string]string {
		z := testZone(t)
		for k, v := range extra {
			z[k] = v
		}
		return z
	}
	cases := []struct {
		name     string
		msg      string
		zone     map[string]string
		fail     map[string]error // lookups that fail
		want     Status
		why      string // in the error
		unsigned int64
	}{
		{name: "good", msg: good + testMessage, want: Pass},
		{name: "tampered body", msg: good + strings.Replace(testMessage, "lost", "won", 1), want: Fail, why: "body hash"},
		{name: "tampered signed header", msg: good + strings.Replace(testMessage, "Subject: Is", "Subject: Was", 1), want: Fail, why: "header was changed"},
		{name: "added From", msg: good + "From: evil@example.com\r\n" + testMessage, want: Fail, why: "header was changed"},
		{name: "unsigned header changed", msg: good + strings.Replace(testMessage, "whatever", "other", 1), want: Pass},
		{name: "header refolded (relaxed)", msg: good + strings.Replace(testMessage, "Subject: Is dinner", "Subject:   Is\r\n\tdinner", 1), want: Pass},
		{name: "From not in h=", msg: craft(t, rsaK, strings.Replace(std, "h=from:to", "h=to", 1), testMessage) + testMessage, want: PermError, why: "From"},
		{name: "expired", msg: craft(t, rsaK, std+" x=1800000001;", testMessage) + testMessage, want: PermError, why: "expired"},
		{name: "x= before t=", msg: craft(t, rsaK, std+" x=1799999999;", testMessage) + testMessage, want: Neutral, why: "x= before t="},
		{name: "in the future", msg: craft(t, rsaK, strings.Replace(std, "t=1800000000", "t=1800086400", 1), testMessage) + testMessage, want: PermError, why: "future"},
		{name: "rsa-sha1", msg: craft(t, rsaK, strings.Replace(std, "rsa-sha256", "rsa-sha1", 1), testMessage) + testMessage, want: PermError, why: "rsa-sha1"},
		{name: "512-bit key", msg: craft(t, small, strings.Replace(std, "s=rsa", "s=small", 1), testMessage) + testMessage,
			zone: map[string]string{"small._domainkey.example.org": record(t, small)}, want: PermError, why: "512 bits"},
		{name: "revoked key", msg: good + testMessage, zone: map[string]string{"rsa._domainkey.example.org": "v=DKIM1; k=rsa; p="}, want: PermError, why: "revoked"},
		{name: "no key", msg: good + testMessage, zone: map[string]string{"rsa._domainkey.example.org": ""}, want: PermError, why: "no key"},
		{name: "dns failure", msg: good + testMessage, fail: map[string]error{"rsa._domainkey.example.org": errors.New("SERVFAIL")}, want: TempError, why: "SERVFAIL"},
		{name: "bad key record", msg: good + testMessage, zone: map[string]string{"rsa._domainkey.example.org": "v=DKIM1; p=AAAA"}, want: PermError, why: "p="},
		{name: "key of another type", msg: good + testMessage, zone: map[string]string{"rsa._domainkey.example.org": testZone(t)["ed._domainkey.example.org"]}, want: PermError, why: "ed25519 key"},
		{name: "key h= without sha256", msg: good + testMessage, zone: map[string]string{"rsa._domainkey.example.org": "h=sha1; " + testZone(t)["rsa._domainkey.example.org"][9:]}, want: PermError, why: "h=sha1"},
		{name: "key t=s, i= in a subdomain", msg: craft(t, rsaK, std+" i=@sub.example.org;", testMessage) + testMessage,
			zone: map[string]string{"rsa._domainkey.example.org": testZone(t)["rsa._domainkey.example.org"] + "; t=s"}, want: PermError, why: "t=s"},
		{name: "key t=y", msg: good + testMessage, zone: map[string]string{"rsa._domainkey.example.org": testZone(t)["rsa._domainkey.example.org"] + "; t=y"}, want: Pass},
		{name: "i= outside d=", msg: craft(t, rsaK, std+" i=@example.com;", testMessage) + testMessage, want: PermError, why: "not in d="},
		{name: "unknown algorithm", msg: craft(t, rsaK, strings.Replace(std, "rsa-sha256", "rsa-sha512", 1), testMessage) + testMessage, want: Neutral, why: "unknown algorithm"},
		{name: "unknown version", msg: craft(t, rsaK, strings.Replace(std, "v=1", "v=2", 1), testMessage) + testMessage, want: Neutral, why: "version"},
		{name: "duplicate tags", msg: craft(t, rsaK, std+" s=rsa;", testMessage) + testMessage, want: Neutral, why: "duplicate"},
		{name: "no bh=", msg: craft(t, rsaK, strings.Replace(std, "bh="+bh+";", "", 1), testMessage) + testMessage, want: Neutral, why: "bh="},
		{name: "ed25519 sig, rsa a=", msg: craft(t, edK, strings.Replace(std, "s=rsa", "s=ed", 1), testMessage) + testMessage, want: PermError, why: "rsa-sha256 with an ed25519"},
		{name: "l= with content appended", msg: craft(t, rsaK, std+" l=46;", testMessage) + testMessage + "Click here: http://evil.example/\r\n",
			want: Pass, unsigned: 38},
		{name: "l= longer than the body", msg: craft(t, rsaK, std+" l=99;", testMessage) + testMessage, want: PermError, why: "longer than the body"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			z := zone(zoneWith(c.zone))
			for name, v := range c.zone {
				if v == "" {
					delete(z.TXTs, name)
				}
			}
			z.Fail = c.fail
			v := &Verifier{Resolver: z, Now: fixed(now.Add(10 * time.Second))}
			res, err := v.Verify(context.Background(), strings.NewReader(c.msg))
			if err != nil {
				t.Fatal(err)
			}
			if len(res) != 1 {
				t.Fatalf("%d results", len(res))
			}
			r := res[0]
			if r.Status != c.want || (c.why != "" && (r.Err == nil || !strings.Contains(r.Err.Error(), c.why))) {
				t.Errorf("%s (%v), want %s (%s)", r.Status, r.Err, c.want, c.why)
			}
			if r.Unsigned != c.unsigned {
				t.Errorf("unsigned %d, want %d", r.Unsigned, c.unsigned)
			}
			if c.unsigned > 0 {
				t.Logf("l=%d: pass for the first %d octets of the body; %d octets after them are not signed (RFC 6376 §8.2)", r.Length, r.Length, r.Unsigned)
			}
		})
	}
}

// TestVerifyLimit: signatures past the limit are not verified (policy).
func TestVerifyLimit(t *testing.T) {
	s := testSigners(t)["ed25519"]
	msg := testMessage
	for range 4 {
		f, err := s.Sign(strings.NewReader(msg))
		if err != nil {
			t.Fatal(err)
		}
		msg = f + msg
	}
	v := &Verifier{Resolver: zone(testZone(t)), MaxSignatures: 3}
	res, err := v.Verify(context.Background(), strings.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range res {
		got = append(got, string(r.Status))
	}
	if strings.Join(got, " ") != "pass pass pass policy" {
		t.Errorf("%v", got)
	}
	if res[3].Domain != "example.org" || res[3].HeaderB == "" {
		t.Errorf("%+v", res[3])
	}
}

func TestVerifyNoSignature(t *testing.T) {
	res, err := Verify(context.Background(), &dns.Mem{}, strings.NewReader(testMessage))
	if err != nil || len(res) != 0 {
		t.Errorf("%v %v", res, err)
	}
	if _, err := Verify(context.Background(), &dns.Mem{}, strings.NewReader(" bad\r\n\r\n")); err == nil {
		t.Error("malformed header: no error")
	}
}

func TestHeaderB(t *testing.T) {
	rs := []Result{{Sig: &Signature{BString: "abcdefghij"}}, {Sig: &Signature{BString: "abcdefghiX"}}, {Sig: &Signature{BString: "zz"}}, {}}
	setHeaderB(rs)
	got := fmt.Sprint(rs[0].HeaderB, " ", rs[1].HeaderB, " ", rs[2].HeaderB, " ", rs[3].HeaderB)
	if got != "abcdefghij abcdefghiX zz " {
		t.Error(got)
	}
}
