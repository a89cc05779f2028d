package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"

	"elit.local/elit/smtpclient"
	"elit.local/elit/userdb"
)

func mustDB(t testing.TB, password string, scramSalt []byte) *userdb.DB {
	t.Helper()
	sec, err := userdb.Hash(password, true)
	if err != nil {
		t.Fatal(err)
	}
	s256, _ := userdb.NewScramSecret("SCRAM-SHA-256", password, scramSalt, 4096)
	s1, _ := userdb.NewScramSecret("SCRAM-SHA-1", password, scramSalt, 4096)
	js := fmt.Sprintf(`[{"name":"user","password":%q,"scram-sha-256":%q,"scram-sha-1":%q,"cram-md5":%q,"mailboxes":["u@example.com"]},
		{"name":"other","password":%q,"mailboxes":["o@example.com"]}]`,
		sec.Password, s256, s1, sec.CramMD5, sec.Password)
	db, err := userdb.Parse([]byte(js), "example.org")
	if err != nil {
		t.Fatal(err)
	}
	return db
}

// run drives a server with client messages; nil in msgs means "no initial
// response". It returns the challenges and the user on success.
func run(t *testing.T, mech string, db *userdb.DB, cfg *Config, msgs ...[]byte) (challenges []string, user *userdb.User, err error) {
	t.Helper()
	s, err := New(mech, db, cfg, func(u *userdb.User) { user = u })
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range msgs {
		ch, done, err := s.Next(m)
		if err != nil {
			return challenges, nil, err
		}
		if done {
			if i != len(msgs)-1 {
				t.Fatalf("done after %d of %d messages", i+1, len(msgs))
			}
			return challenges, user, nil
		}
		challenges = append(challenges, string(ch))
	}
	return challenges, nil, errors.New("not done")
}

func TestPlainLoginCram(t *testing.T) {
	db := mustDB(t, "pencil", []byte("salt"))
	cfg := &Config{Hostname: "mx.example.org"}
	ok := func(name string, u *userdb.User, err error) {
		t.Helper()
		if err != nil || u == nil || u.Name != "user" {
			t.Errorf("%s: user %v, err %v", name, u, err)
		}
	}
	fail := func(name string, u *userdb.User, err error) {
		t.Helper()
		var ae *Error
		if u != nil || !errors.As(err, &ae) {
			t.Errorf("%s: user %v, err %v", name, u, err)
		}
	}
	_, u, err := run(t, "PLAIN", db, cfg, []byte("\x00user\x00pencil"))
	ok("plain initial response", u, err)
	ch, u, err := run(t, "plain", db, cfg, nil, []byte("user\x00user\x00pencil"))
	ok("plain after empty challenge", u, err)
	if len(ch) != 1 || ch[0] != "" {
		t.Errorf("plain challenge %q", ch)
	}
	_, u, err = run(t, "PLAIN", db, cfg, []byte("user@example.org\x00user\x00pencil"))
	ok("plain authzid = own address", u, err)
	_, u, err = run(t, "PLAIN", db, cfg, []byte("other\x00user\x00pencil"))
	fail("plain authzid other user", u, err)
	_, u, err = run(t, "PLAIN", db, cfg, []byte("\x00user\x00pencil2"))
	fail("plain wrong password", u, err)
	_, u, err = run(t, "PLAIN", db, cfg, []byte("\x00nobody\x00pencil"))
	fail("plain unknown user", u, err)
	_, u, err = run(t, "PLAIN", db, cfg, []byte("user pencil"))
	fail("plain malformed", u, err)

	ch, u, err = run(t, "LOGIN", db, cfg, nil, []byte("user"), []byte("pencil"))
	ok("login", u, err)
	if strings.Join(ch, "|") != "Username:|Password:" {
		t.Errorf("login challenges %q", ch)
	}
	_, u, err = run(t, "LOGIN", db, cfg, []byte("user"), []byte("pencil"))
	ok("login initial response", u, err)
	_, u, err = run(t, "LOGIN", db, cfg, nil, []byte("user"), []byte("nope"))
	fail("login wrong password", u, err)

	s, _ := New("CRAM-MD5", db, cfg, func(u2 *userdb.User) { u = u2 })
	chal, _, _ := s.Next(nil)
	if !strings.HasPrefix(string(chal), "<") || !strings.HasSuffix(string(chal), "@mx.example.org>") {
		t.Errorf("cram challenge %q", chal)
	}
	m := hmac.New(md5New, []byte("pencil"))
	m.Write(chal)
	_, done, err := s.Next(fmt.Appendf(nil, "user %x", m.Sum(nil)))
	if !done || err != nil || u == nil {
		t.Errorf("cram-md5: done %v err %v", done, err)
	}
	_, _, err = run(t, "CRAM-MD5", db, cfg, nil, []byte("user 00000000000000000000000000000000"))
	fail("cram wrong", nil, err)

	if _, err := New("DIGEST-MD5", db, cfg, nil); !errors.Is(err, ErrUnknownMechanism) {
		t.Errorf("unknown mechanism: %v", err)
	}
}

// TestScramRFCExamples replays the exchanges of RFC 5802 §5 and RFC 7677 §3
// against the server, with the RFCs' nonces.
func TestScramRFCExamples(t *testing.T) {
	for _, ex := range []struct {
		mech, salt, clientFirst, serverNonce, serverFirst, clientFinal, serverFinal string
	}{
		{
			"SCRAM-SHA-1", "QSXCR+Q6sek8bf92",
			"n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL", "3rfcNHYJY1ZVvWVs7j",
			"r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096",
			"c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
			"v=rmF9pqV8S7suAoZWja4dJRkFsKQ=",
		},
		{
			"SCRAM-SHA-256", "W22ZaJ0SNY7soEsUEjb6gQ==",
			"n,,n=user,r=rOprNGfwEbeRWgbNEkqO", "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
			"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
			"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
			"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
		},
	} {
		t.Run(ex.mech, func(t *testing.T) {
			salt, _ := base64.StdEncoding.DecodeString(ex.salt)
			db := mustDB(t, "pencil", salt)
			cfg := &Config{Nonce: func() string { return ex.serverNonce }}
			ch, u, err := run(t, ex.mech, db, cfg, []byte(ex.clientFirst), []byte(ex.clientFinal), []byte{})
			if err != nil || u == nil {
				t.Fatalf("err %v", err)
			}
			if len(ch) != 2 || ch[0] != ex.serverFirst || ch[1] != ex.serverFinal {
				t.Errorf("challenges %q", ch)
			}
			// A wrong proof fails.
			bad := strings.Replace(ex.clientFinal, "p=", "p=AAAA", 1)
			if _, _, err := run(t, ex.mech, db, cfg, []byte(ex.clientFirst), []byte(bad), []byte{}); err == nil {
				t.Error("a bad proof was accepted")
			}
		})
	}
}

// scramClient runs smtpclient's SCRAM client, with any gs2 header and
// binding data (right or wrong), against server s.
func scramClient(t *testing.T, mech, user, password, gs2 string, cbData []byte, s sasl.Server) error {
	t.Helper()
	c := &smtpclient.SCRAM{Mechanism: mech, User: user, Password: password, GS2: gs2, ChannelBinding: cbData}
	_, resp, err := c.Start()
	if err != nil {
		return err
	}
	for range 4 {
		ch, done, err := s.Next(resp)
		if err != nil || done {
			return err
		}
		if resp, err = c.Next(ch); err != nil {
			return err
		}
	}
	return errors.New("not done after 4 steps")
}

// TestScramPlus binds to a real TLS 1.3 and TLS 1.2 connection with each
// channel binding type, and checks that a binding to another connection or
// a downgrade fails.
func TestScramPlus(t *testing.T) {
	db := mustDB(t, "pencil", []byte("0123456789abcdef"))
	certDER, server, client := tlsPair(t, tls.VersionTLS13)
	cs := server.ConnectionState()
	ccs := client.ConnectionState()
	exp, err := ccs.ExportKeyingMaterial("EXPORTER-Channel-Binding", nil, 32)
	if err != nil {
		t.Fatal(err)
	}
	endpoint := sha256.Sum256(certDER)
	cfg := &Config{TLS: &cs, CertDER: certDER, PlusAdvertised: true}
	newS := func(mech string) (*scram, *bool) {
		ok := new(bool)
		s, _ := New(mech, db, cfg, func(*userdb.User) { *ok = true })
		return s.(*scram), ok
	}
	s, ok := newS("SCRAM-SHA-256-PLUS")
	if err := scramClient(t, "SCRAM-SHA-256-PLUS", "user", "pencil", "p=tls-exporter,,", exp, s); err != nil || !*ok {
		t.Errorf("tls-exporter: %v", err)
	}
	s, ok = newS("SCRAM-SHA-256-PLUS")
	if err := scramClient(t, "SCRAM-SHA-256-PLUS", "user", "pencil", "p=tls-server-end-point,,", endpoint[:], s); err != nil || !*ok {
		t.Errorf("tls-server-end-point: %v", err)
	}
	s, _ = newS("SCRAM-SHA-256-PLUS")
	if err := scramClient(t, "SCRAM-SHA-256-PLUS", "user", "pencil", "p=tls-exporter,,", make([]byte, 32), s); err == nil {
		t.Error("a binding to another channel was accepted")
	}
	s, _ = newS("SCRAM-SHA-256-PLUS")
	if err := scramClient(t, "SCRAM-SHA-256-PLUS", "user", "pencil", "p=tls-unique,,", nil, s); err == nil {
		t.Error("tls-unique accepted on TLS 1.3")
	}
	s, _ = newS("SCRAM-SHA-256")
	if err := scramClient(t, "SCRAM-SHA-256", "user", "pencil", "y,,", nil, s); err == nil {
		t.Error("downgrade (y with PLUS advertised) accepted")
	}
	s, _ = newS("SCRAM-SHA-256-PLUS")
	if err := scramClient(t, "SCRAM-SHA-256-PLUS", "user", "pencil", "n,,", nil, s); err == nil {
		t.Error("-PLUS without binding accepted")
	}
	s, ok = newS("SCRAM-SHA-1")
	if err := scramClient(t, "SCRAM-SHA-1", "user", "pencil", "y,,", nil, s); err != nil || !*ok {
		t.Errorf("SCRAM-SHA-1 with y (no SHA-1-PLUS offered): %v", err)
	}
	s, _ = newS("SCRAM-SHA-256")
	if err := scramClient(t, "SCRAM-SHA-256", "nobody", "pencil", "n,,", nil, s); err == nil {
		t.Error("unknown user accepted")
	}

	certDER, server, _ = tlsPair(t, tls.VersionTLS12)
	cs = server.ConnectionState()
	cfg.TLS, cfg.CertDER = &cs, certDER
	s, ok = newS("SCRAM-SHA-256-PLUS")
	if err := scramClient(t, "SCRAM-SHA-256-PLUS", "user", "pencil", "p=tls-unique,,", cs.TLSUnique, s); err != nil || !*ok {
		t.Errorf("tls-unique on TLS 1.2: %v", err)
	}
}

// TestScramMalformed feeds broken messages: each is an *Error, none panics.
func TestScramMalformed(t *testing.T) {
	db := mustDB(t, "pencil", []byte("salt"))
	cfg := &Config{}
	for _, first := range []string{"", "n", "n,", "n,,", "x,,n=user,r=a", "n,,m=ext,n=user,r=a", "n,,n=,r=a",
		"n,,n=us=er,r=a", "n,,n=user", "n,,n=user,r=", "p=tls-exporter,,n=user,r=a", "n,b,n=user,r=a"} {
		_, _, err := run(t, "SCRAM-SHA-256", db, cfg, []byte(first))
		var ae *Error
		if !errors.As(err, &ae) {
			t.Errorf("%q: %v", first, err)
		}
	}
	for _, final := range []string{"", "c=biws", "p=abc", "c=biws,r=x,p=abc", "c=!!,r=x,p=a", "r=x,c=biws,p=a"} {
		_, _, err := run(t, "SCRAM-SHA-256", db, cfg, []byte("n,,n=user,r=abc"), []byte(final))
		var ae *Error
		if !errors.As(err, &ae) {
			t.Errorf("final %q: %v", final, err)
		}
	}
}

func FuzzScram(f *testing.F) {
	f.Add("n,,n=user,r=abc", "c=biws,r=abc,p=AAAA")
	f.Add("p=tls-exporter,a=user,n=user,r=abc", "c=biws,r=abcdef,p=AAAA")
	f.Add("y,,n=us=2Cer,r=abc", "c=eSws,r=abc,p=")
	db := mustDB(f, "pencil", []byte("salt"))
	f.Fuzz(func(t *testing.T, first, final string) {
		for _, mech := range []string{"SCRAM-SHA-256", "SCRAM-SHA-256-PLUS", "PLAIN", "LOGIN", "CRAM-MD5"} {
			s, _ := New(mech, db, &Config{}, func(*userdb.User) {})
			s.Next([]byte(first))
			s.Next([]byte(final))
			s.Next(nil)
		}
	})
}

func tlsPair(t *testing.T, version uint16) (certDER []byte, server, client *tls.Conn) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), DNSNames: []string{"mx.example.org"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	certDER, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	server = tls.Server(a, &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{certDER}, PrivateKey: key}},
		MinVersion: version, MaxVersion: version})
	client = tls.Client(b, &tls.Config{InsecureSkipVerify: true, MinVersion: version, MaxVersion: version})
	errc := make(chan error, 1)
	go func() { errc <- server.Handshake() }()
	if err := client.Handshake(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	return certDER, server, client
}

// TestClients runs each of smtpclient's SASL clients against the server
// of the same mechanism.
func TestClients(t *testing.T) {
	db := mustDB(t, "pencil", []byte("0123456789abcdef"))
	for _, mech := range smtpclient.Mechanisms {
		for _, pw := range []string{"pencil", "wrong"} {
			c, err := smtpclient.NewSASL(mech, "user", pw)
			if err != nil {
				t.Fatal(err)
			}
			var user *userdb.User
			s, _ := New(mech, db, &Config{Hostname: "mx.example.org"}, func(u *userdb.User) { user = u })
			name, ir, _ := c.Start()
			if name != mech {
				t.Fatalf("%s: Start says %s", mech, name)
			}
			var serr, cerr error
			resp := ir
			for range 5 {
				ch, done, err := s.Next(resp)
				if serr = err; err != nil || done {
					break
				}
				if resp, cerr = c.Next(ch); cerr != nil {
					break
				}
			}
			ok := serr == nil && cerr == nil && user != nil
			if ok != (pw == "pencil") {
				t.Errorf("%s with %q: server %v, client %v", mech, pw, serr, cerr)
			}
		}
	}
}
