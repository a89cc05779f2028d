package dkim

import (
	"context"
	"errors"
	"strconv"
	"testing"

	"elit.local/elit/dns"
)

func TestParseKey(t *testing.T) {
	rsaRec := record(t, loadKey(t, "rsa2048.pem"))
	rsaP := rsaRec[len("v=DKIM1; k=rsa; p="):]
	edRec := record(t, loadKey(t, "ed25519.pem"))
	cases := []struct {
		rec  string
		want string // "error", or type/bits/flags
	}{
		{rsaRec, "rsa 2048"},
		{"p=" + rsaP, "rsa 2048"},
		{edRec, "ed25519 256"},
		{"v=DKIM1; k=rsa; p=" + rsaP[:100] + " \t" + rsaP[100:], "rsa 2048"},
		{"v=DKIM1; p=", "rsa revoked"},
		{"v=DKIM1; k=rsa; t=y:s:x; p=" + rsaP, "rsa 2048 testing strict"},
		{"v=DKIM1; k=rsa; s=email; p=" + rsaP, "rsa 2048"},
		{"v=DKIM1; k=rsa; s=*; h=sha256:sha1; n=hi; z=unknown; p=" + rsaP, "rsa 2048"},
		{"v=DKIM1; k=rsa; s=tlsrpt; p=" + rsaP, "error"},
		{"k=rsa; v=DKIM1; p=" + rsaP, "error"},
		{"v=DKIM2; p=" + rsaP, "error"},
		{"v=DKIM1; k=rsa", "error"},
		{"v=DKIM1; k=dsa; p=" + rsaP, "error"},
		{"v=DKIM1; k=ed25519; p=" + rsaP, "error"},
		{"v=DKIM1; k=rsa; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=", "error"},
		{"v=DKIM1; k=rsa; p=!!!", "error"},
		{"v=DKIM1; p=a; p=b", "error"},
		{"", "error"},
	}
	for _, c := range cases {
		k, err := ParseKey(c.rec)
		got := "error"
		if err == nil {
			got = k.Type
			if k.Revoked {
				got += " revoked"
			} else {
				got += " " + strconv.Itoa(k.Bits())
			}
			if k.Testing {
				got += " testing"
			}
			if k.Strict {
				got += " strict"
			}
		}
		if got != c.want {
			t.Errorf("%.60q: %s (%v), want %s", c.rec, got, err, c.want)
		}
	}
}

func TestLookupKey(t *testing.T) {
	rec := record(t, loadKey(t, "ed25519.pem"))
	m := &dns.Mem{
		TXTs: map[string][]string{
			"a._domainkey.example.org":    {"v=spf1 -all", rec},
			"bad._domainkey.example.org":  {"v=spf1 -all"},
			"none._domainkey.example.org": nil,
		},
		Fail: map[string]error{"fail._domainkey.example.org": errors.New("timeout")},
	}
	ctx := context.Background()
	if k, err := LookupKey(ctx, m, "a", "example.org."); err != nil || k.Type != "ed25519" {
		t.Errorf("a: %v %v", k, err)
	}
	for sel, temp := range map[string]bool{"bad": false, "none": false, "missing": false, "fail": true} {
		_, err := LookupKey(ctx, m, sel, "example.org")
		if err == nil || errors.Is(err, ErrTemporary) != temp {
			t.Errorf("%s: %v (temporary: want %v)", sel, err, temp)
		}
	}
}

func FuzzParseKey(f *testing.F) {
	for _, s := range []string{
		"v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=",
		"v=DKIM1; k=rsa; p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDkHlOQoBTzWRiGs5V6NpP3idY6Wk08a5qhdR6wy5bdOKb2jLQiY/J16JYi0Qvx/byYzCNb3W91y3FutACDfzwQ/BC/e/8uBsCR+yz1Lxj+PL6lHvqMKrM3rG4hstT5QjvHO9PzoxZyVYLzBfO2EeC3Ip3G+2kryOTIKT+l/K4w3QIDAQAB",
		"v=DKIM1; p=", "p=AAAA; t=y:s; h=sha256; s=email", "v=DKIM1; k=rsa; s=*; p=MFwwDQ",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		k, err := ParseKey(s)
		if err != nil {
			return
		}
		if k.Revoked != (k.PublicKey == nil) || (k.Type != "rsa" && k.Type != "ed25519") {
			t.Fatalf("%q: %+v", s, k)
		}
		if !k.Revoked {
			if _, err := KeyRecord(k.PublicKey); err != nil {
				t.Fatalf("%q: %v", s, err)
			}
		}
	})
}
