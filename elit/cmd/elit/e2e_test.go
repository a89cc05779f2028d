package main

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"io"
	"net/smtp"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-sasl"

	"elit.local/elit/auth"
	"elit.local/elit/queue"
	"elit.local/oneffs"
)

func openQueue(t *testing.T, s *server) *queue.Store {
	t.Helper()
	q, err := queue.Attach(filepath.Join(s.state, "queue"))
	if err != nil {
		t.Fatal(err)
	}
	return q
}

// TestServeAuth: every mechanism over STARTTLS (587) and implicit TLS
// (465), each through an outside client: swaks (PLAIN, LOGIN, CRAM-MD5),
// msmtp (SCRAM-SHA-1, SCRAM-SHA-256), GNU SASL's gsasl (SCRAM-SHA-256-PLUS
// with tls-exporter over STARTTLS), and a Go client for -PLUS on 465 with
// both binding types.
func TestServeAuth(t *testing.T) {
	needTools(t, "swaks", "msmtp", "gsasl")
	s := startServer(t)
	sent := 0
	for _, port := range []struct {
		name, addr string
		swaksTLS   string
		msmtpTLS   string
	}{{"587", s.sub, "--tls", "--tls-starttls=on"}, {"465", s.subs, "--tls-on-connect", "--tls-starttls=off"}} {
		for _, mech := range []string{"PLAIN", "LOGIN", "CRAM-MD5"} {
			t.Run(port.name+"/"+mech, func(t *testing.T) {
				code, out := s.swaks(port.addr, port.swaksTLS, "--auth", mech, "--auth-user", "din", "--auth-password", dinPassword,
					"--from", "din@example.org", "--to", "someone@example.net", "--header", "From: Din <din@example.org>")
				if code != 0 || len(queued(out)) != 1 {
					t.Fatalf("swaks exit %d:\n%s", code, out)
				}
				sent++
			})
		}
		for _, mech := range []string{"scram-sha-1", "scram-sha-256"} {
			t.Run(port.name+"/"+mech, func(t *testing.T) {
				code, out := runTool(t, "From: din@example.org\r\nTo: x@example.net\r\nSubject: msmtp\r\n\r\nbody\r\n", "msmtp",
					"--host=127.0.0.1", "--port="+s.port(port.addr), "--tls=on", port.msmtpTLS, "--tls-trust-file="+s.cert,
					"--auth="+mech, "--user=din", "--passwordeval=echo "+dinPassword, "--from=din@example.org", "x@example.net")
				if code != 0 {
					t.Fatalf("msmtp exit %d: %s\n%s", code, out, s.logText())
				}
				sent++
			})
		}
	}
	t.Run("587/SCRAM-SHA-256-PLUS/gsasl", func(t *testing.T) {
		code, out := runTool(t, "", "gsasl", "--connect="+s.sub, "--smtp", "--starttls", "--mechanism=SCRAM-SHA-256-PLUS",
			"-a", "din", "-p", dinPassword, "--x509-ca-file="+s.cert)
		if code != 0 || !strings.Contains(out, "235 2.0.0") {
			t.Fatalf("gsasl exit %d:\n%s", code, out)
		}
		code, out = runTool(t, "", "gsasl", "--connect="+s.sub, "--smtp", "--starttls", "--mechanism=SCRAM-SHA-256-PLUS",
			"-a", "din", "-p", "wrong", "--x509-ca-file="+s.cert)
		if code == 0 || strings.Contains(out, "235 ") {
			t.Fatalf("gsasl with a wrong password: exit %d:\n%s", code, out)
		}
	})
	for _, cb := range []string{"tls-exporter", "tls-server-end-point"} {
		t.Run("465/SCRAM-SHA-256-PLUS/"+cb, func(t *testing.T) {
			tc := dialTLS(t, s)
			c, err := smtp.NewClient(tc, "mx.example.org")
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if err := c.Auth(scramPlus(tc, cb, "din", dinPassword)); err != nil {
				t.Fatalf("auth: %v", err)
			}
			if err := c.Auth(scramPlus(tc, cb, "din", dinPassword)); err == nil {
				t.Fatal("a second AUTH was accepted")
			}
		})
	}
	q := openQueue(t, s)
	msgs, err := q.List()
	if err != nil || len(msgs) != sent || sent != 10 {
		t.Fatalf("%d messages queued, %d sent (%v)", len(msgs), sent, err)
	}
	for _, m := range msgs {
		if m.AuthUser != "din" || m.From != "din@example.org" {
			t.Errorf("message %s: user %q from %q", m.ID, m.AuthUser, m.From)
		}
	}
}

func dialTLS(t *testing.T, s *server) *tls.Conn {
	t.Helper()
	pool := x509.NewCertPool()
	pem, _ := os.ReadFile(s.cert)
	pool.AppendCertsFromPEM(pem)
	tc, err := tls.Dial("tcp", s.subs, &tls.Config{ServerName: "mx.example.org", RootCAs: pool})
	if err != nil {
		t.Fatal(err)
	}
	return tc
}

// scramPlus is elit/auth's SCRAM-SHA-256-PLUS client bound to tc, as a
// net/smtp Auth.
func scramPlus(tc *tls.Conn, cbType, user, password string) smtp.Auth {
	cs := tc.ConnectionState()
	var cb []byte
	switch cbType {
	case "tls-exporter":
		cb, _ = cs.ExportKeyingMaterial("EXPORTER-Channel-Binding", nil, 32)
	case "tls-server-end-point":
		sum := sha256.Sum256(cs.PeerCertificates[0].Raw)
		cb = sum[:]
	}
	return netSMTPAuth{auth.NewChannelBindingClient(user, password, cbType, cb)}
}

// netSMTPAuth adapts a go-sasl client to net/smtp.
type netSMTPAuth struct{ c sasl.Client }

func (a netSMTPAuth) Start(*smtp.ServerInfo) (string, []byte, error) { return a.c.Start() }

func (a netSMTPAuth) Next(from []byte, more bool) ([]byte, error) {
	if !more {
		return nil, nil
	}
	return a.c.Next(from)
}

// TestServeAuthNeedsTLS: on 587 before STARTTLS there is no AUTH, and AUTH
// is refused; the MX never offers AUTH.
func TestServeAuthNeedsTLS(t *testing.T) {
	needTools(t, "swaks")
	s := startServer(t)
	code, out := s.swaks(s.sub, "--auth", "PLAIN", "--auth-user", "din", "--auth-password", dinPassword,
		"--from", "din@example.org", "--to", "x@example.net")
	if code == 0 || strings.Contains(out, "250-AUTH") {
		t.Fatalf("swaks without TLS: exit %d\n%s", code, out)
	}
	for _, addr := range []string{s.sub, s.mx} {
		c := dialRaw(t, addr)
		c.send("EHLO client.example.net\r\n")
		if r := c.expect("250"); strings.Contains(r, "AUTH") {
			t.Errorf("AUTH offered without TLS: %q", r)
		}
		c.send("AUTH PLAIN " + base64.StdEncoding.EncodeToString([]byte("\x00din\x00"+dinPassword)) + "\r\n")
		if r, _ := c.reply(); !strings.HasPrefix(r, "5") {
			t.Errorf("AUTH without TLS: %q", r)
		}
	}
	c := dialRaw(t, s.mx)
	c.send("EHLO client.example.net\r\n")
	c.expect("250")
	c.startTLS(s.cert)
	c.send("EHLO client.example.net\r\n")
	if r := c.expect("250"); strings.Contains(r, "AUTH") {
		t.Errorf("the MX offers AUTH: %q", r)
	}
	// Unauthenticated submission is refused at MAIL.
	c = dialRaw(t, s.sub)
	c.send("EHLO client.example.net\r\n")
	c.expect("250")
	c.startTLS(s.cert)
	c.send("EHLO client.example.net\r\nMAIL FROM:<din@example.org>\r\n")
	c.expect("250")
	c.expect("530 5.7.0")
}

// TestServeWrongPassword: wrong passwords get 535, the third on a
// connection ends it with 421, and too many from one address block AUTH
// even with the right password.
func TestServeWrongPassword(t *testing.T) {
	needTools(t, "swaks")
	s := startServer(t, "-max-auth-failures-per-ip", "5")
	code, out := s.swaks(s.sub, "--tls", "--auth", "LOGIN", "--auth-user", "din", "--auth-password", "wrong",
		"--from", "din@example.org", "--to", "x@example.net")
	if code == 0 || !strings.Contains(out, "535 5.7.8") {
		t.Fatalf("swaks with a wrong password: exit %d\n%s", code, out)
	}
	c := dialRawTLS(t, s)
	c.send("EHLO client.example.net\r\n")
	c.expect("250")
	bad := base64.StdEncoding.EncodeToString([]byte("\x00din\x00nope"))
	c.send("AUTH PLAIN " + bad + "\r\n")
	c.expect("535 5.7.8")
	c.send("AUTH PLAIN " + bad + "\r\n")
	c.expect("535 5.7.8")
	c.send("AUTH PLAIN " + bad + "\r\n")
	c.expect("421 4.7.0")
	if r, err := c.reply(); err == nil {
		t.Fatalf("connection still open after 421: %q", r)
	}
	// 4 failures so far from 127.0.0.1; one more reaches the limit of 5.
	c = dialRawTLS(t, s)
	c.send("EHLO client.example.net\r\nAUTH PLAIN " + bad + "\r\n")
	c.expect("250")
	c.expect("535")
	good := base64.StdEncoding.EncodeToString([]byte("\x00din\x00" + dinPassword))
	c.send("AUTH PLAIN " + good + "\r\n")
	c.expect("454 4.7.0")
	waitLog(t, s, "too many failures from this address")
	if strings.Contains(s.logText(), "nope") || strings.Contains(s.logText(), bad) {
		t.Errorf("the log shows a password")
	}
}

// TestServeSendAs: MAIL FROM and header From must be the user's own
// address or a list it is in.
func TestServeSendAs(t *testing.T) {
	needTools(t, "swaks")
	s := startServer(t)
	send := func(from, header string) (int, string) {
		return s.swaks(s.subs, "--tls-on-connect", "--auth", "PLAIN", "--auth-user", "din", "--auth-password", dinPassword,
			"--from", from, "--to", "x@example.net", "--header", "From: "+header)
	}
	if code, out := send("bob@example.org", "bob@example.org"); code == 0 || !strings.Contains(out, "550 5.7.1") {
		t.Errorf("MAIL FROM another user: exit %d\n%s", code, out)
	}
	if code, out := send("din@example.org", "Bob <bob@example.org>"); code == 0 || !strings.Contains(out, "550 5.7.1") || len(queued(out)) != 0 {
		t.Errorf("header From another user: exit %d\n%s", code, out)
	}
	if code, out := send("team@example.org", "The team <team@example.org>"); code != 0 {
		t.Errorf("as a list din is in: exit %d\n%s", code, out)
	}
	if code, out := send("DIN@Example.ORG", "=?utf-8?q?D=C3=AEn?= <din@example.org>"); code != 0 {
		t.Errorf("own address, other case, encoded name: exit %d\n%s", code, out)
	}
	if code, out := send("<>", "din@example.org"); code == 0 {
		t.Errorf("null sender on submission: exit %d\n%s", code, out)
	}
}

// TestServeMX: no open relay; unknown users refused at RCPT; a list is
// expanded in the queue; postmaster always accepted.
func TestServeMX(t *testing.T) {
	needTools(t, "swaks")
	s := startServer(t, "-postmaster", "din@example.org")
	code, out := s.swaks(s.mx, "--from", "x@example.net", "--to", "someone@elsewhere.example")
	if code == 0 || !strings.Contains(out, "554 5.7.1") {
		t.Errorf("relay: exit %d\n%s", code, out)
	}
	code, out = s.swaks(s.mx, "--from", "x@example.net", "--to", "nobody@example.org")
	if code == 0 || !strings.Contains(out, "550 5.1.1") || strings.Contains(out, "354") {
		t.Errorf("unknown user: exit %d\n%s", code, out)
	}
	code, out = s.swaks(s.mx, "--tls", "--from", "x@example.net", "--to", "team@example.org")
	ids := queued(out)
	if code != 0 || len(ids) != 1 {
		t.Fatalf("to a list: exit %d\n%s", code, out)
	}
	q := openQueue(t, s)
	m, err := q.Get(ids[0])
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range m.Recipients {
		got = append(got, r.Address+"<"+r.Original)
	}
	want := []string{"romain@example.com<team@example.org", "hannes@example.net<team@example.org"}
	if !slices.Equal(got, want) {
		t.Errorf("recipients %q, want %q", got, want)
	}
	f, _ := q.Data(ids[0])
	head := make([]byte, 400)
	n, _ := f.Read(head)
	f.Close()
	if !strings.HasPrefix(string(head[:n]), "Received: from client.example.net ([127.0.0.1])\r\n\tby mx.example.org (Elit) with ESMTPS id "+ids[0]) ||
		!strings.Contains(string(head[:n]), "for <team@example.org>;") {
		t.Errorf("Received header:\n%s", head[:n])
	}
	// go-smtp's parser refuses the bare <Postmaster> of RFC 5321 §4.1.1.3
	// before we see it; the qualified forms work.
	for _, to := range []string{"postmaster@example.org", "PostMaster@example.org"} {
		code, out = s.swaks(s.mx, "--from", "", "--to", to)
		ids = queued(out)
		if code != 0 || len(ids) != 1 {
			t.Fatalf("to %s: exit %d\n%s", to, code, out)
		}
		m, _ := q.Get(ids[0])
		if len(m.Recipients) != 1 || m.Recipients[0].Address != "romain@example.com" {
			t.Errorf("postmaster went to %+v", m.Recipients)
		}
	}
}

// TestServePipelining sends 10 messages in one connection, each
// MAIL/RCPT/DATA group in one write and each message's end in the same
// write as the next group (RFC 2920).
func TestServePipelining(t *testing.T) {
	s := startServer(t)
	c := dialRaw(t, s.mx)
	c.send("EHLO client.example.net\r\n")
	if r := c.expect("250"); !strings.Contains(r, "PIPELINING") {
		t.Fatalf("no PIPELINING: %q", r)
	}
	group := "MAIL FROM:<x@example.net>\r\nRCPT TO:<din@example.org>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n"
	c.send(group)
	var ids []string
	for i := range 10 {
		c.expect("250")
		c.expect("250")
		c.expect("250")
		c.expect("354")
		body := fmt.Sprintf("Subject: %d\r\n\r\nmessage %d\r\n.\r\n", i, i)
		if i < 9 {
			body += group
		} else {
			body += "QUIT\r\n"
		}
		c.send(body)
		ids = append(ids, queued(c.expect("250 2.0.0"))...)
	}
	c.expect("221")
	if len(ids) != 10 {
		t.Fatalf("%d queued", len(ids))
	}
	q := openQueue(t, s)
	for i, id := range ids {
		f, err := q.Data(id)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(f)
		f.Close()
		if !strings.HasSuffix(string(b), fmt.Sprintf("\r\n\r\nmessage %d\r\n", i)) {
			t.Errorf("message %d: %q", i, b)
		}
	}
}

// TestServeSize: SIZE over the limit is refused at MAIL, and a message
// over it at the end of DATA, both with 552.
func TestServeSize(t *testing.T) {
	needTools(t, "swaks")
	s := startServer(t, "-max-size", "20000")
	big := strings.Repeat("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\r\n", 500)
	code, out := s.swaks(s.mx, "--from", "x@example.net", "--to", "din@example.org", "--body", big)
	if code == 0 || !strings.Contains(out, "552 5.3.4") || len(queued(out)) != 0 {
		t.Errorf("oversized message: exit %d\n%.2000s", code, out)
	}
	c := dialRaw(t, s.mx)
	c.send("EHLO client.example.net\r\nMAIL FROM:<x@example.net> SIZE=30000\r\n")
	if r := c.expect("250"); !strings.Contains(r, "SIZE 20000") {
		t.Errorf("EHLO: %q", r)
	}
	c.expect("552")
	// The connection still works.
	c.send("MAIL FROM:<x@example.net> SIZE=100\r\nRCPT TO:<din@example.org>\r\nDATA\r\n")
	c.expect("250")
	c.expect("250")
	c.expect("354")
	c.send("Subject: small\r\n\r\nok\r\n.\r\n")
	c.expect("250 2.0.0 Queued")
}

// TestServeSmuggling: a message with a bare LF end-of-data (and its
// variants) is refused whole; the "smuggled" second message is never
// queued. A bare LF or CR anywhere in the data is refused too.
func TestServeSmuggling(t *testing.T) {
	s := startServer(t)
	q := openQueue(t, s)
	for _, eod := range []string{"\n.\n", "\n.\r\n", "\r\n.\n", "\r.\r\n", "\r\n.\r"} {
		t.Run(fmt.Sprintf("%q", eod), func(t *testing.T) {
			c := mxData(t, s.mx, "<x@example.net>", "<din@example.org>")
			c.send("Subject: first\r\n\r\nfirst" + eod +
				"MAIL FROM:<admin@example.org>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\nSubject: smuggled\r\n\r\nsmuggled\r\n.\r\n")
			// Each is refused for its bare CR or LF ("\r\n.\r" + "M" too:
			// upstream go-smtp's reader deleted that CR, third_party/go-smtp
			// keeps it).
			if r, _ := c.reply(); !strings.HasPrefix(r, "550 5.5.2") {
				t.Errorf("reply %q", r)
			}
			c.send("QUIT\r\n")
			c.expect("221")
		})
	}
	msgs, _ := q.List()
	for _, m := range msgs {
		if len(m.Recipients) != 1 || m.Recipients[0].Address != "romain@example.com" {
			t.Errorf("a smuggled message was queued: %+v", m)
		}
	}
	if len(msgs) > 0 {
		t.Errorf("%d messages queued", len(msgs))
	}
	c := dialRaw(t, s.sub)
	c.send("EHLO client.example.net\r\n")
	c.expect("250")
	c.startTLS(s.cert)
	c.send("EHLO client.example.net\r\nAUTH PLAIN " + base64.StdEncoding.EncodeToString([]byte("\x00din\x00"+dinPassword)) + "\r\n")
	c.expect("250")
	c.expect("235")
	c.send("MAIL FROM:<din@example.org>\r\nRCPT TO:<x@example.net>\r\nDATA\r\n")
	c.expect("250")
	c.expect("250")
	c.expect("354")
	c.send("From: din@example.org\r\n\r\nbare\nLF\r\n.\r\n")
	c.expect("550 5.5.2")
	if after, _ := q.List(); len(after) != len(msgs) {
		t.Errorf("the bare-LF message was queued")
	}
}

// TestServeStartTLSInjection: commands pipelined after STARTTLS in the
// same packet are discarded, not run inside TLS (CVE-2011-0411 family).
func TestServeStartTLSInjection(t *testing.T) {
	s := startServer(t)
	c := dialRaw(t, s.sub)
	c.send("EHLO client.example.net\r\n")
	c.expect("250")
	c.send("STARTTLS\r\nEHLO injected.example\r\nMAIL FROM:<din@example.org>\r\n")
	c.expect("220")
	c.tlsUp(s.cert)
	c.send("NOOP\r\n")
	// The first reply inside TLS must be to NOOP, not to the injected EHLO.
	if r := c.expect("250"); !strings.HasPrefix(r, "250 2.0.0") || strings.Contains(r, "injected") {
		t.Errorf("first reply in TLS: %q", r)
	}
	c.send("MAIL FROM:<x@example.net>\r\n")
	if r, _ := c.reply(); !strings.HasPrefix(r, "502") { // no EHLO after TLS yet: the injected one was dropped
		t.Errorf("MAIL after injected EHLO: %q", r)
	}
}

// TestServeBadInput: garbage, long lines and odd commands get errors, the
// server stays up.
func TestServeBadInput(t *testing.T) {
	s := startServer(t)
	c := dialRaw(t, s.mx)
	c.send("\x00\x01\xff garbage\r\n")
	c.expect("5")
	c.send("MAIL FROM:<x@example.net>\r\n") // before EHLO
	c.expect("5")
	c.send("EHLO client.example.net\r\nMAIL FROM:<<<@>>>\r\n")
	c.expect("250")
	c.expect("5")
	c.send("MAIL FROM:<x@example.net>\r\nRCPT TO:<\"unterminated@example.org>\r\n")
	c.expect("250")
	c.expect("5")
	c = dialRaw(t, s.mx)
	c.send("EHLO " + strings.Repeat("a", 10000) + "\r\n")
	c.expect("500")
	c = mxData(t, s.mx, "<x@example.net>", "<din@example.org>")
	c.send("Subject: long\r\n\r\n" + strings.Repeat("x", 5000) + "\r\n.\r\n")
	if r, _ := c.reply(); !strings.HasPrefix(r, "5") {
		t.Errorf("over-long data line: %q", r)
	}
	c = dialRaw(t, s.mx) // still up
	c.send("QUIT\r\n")
	c.expect("221")
}

// TestServeConfigErrors: an invalid configuration is one line and exit 125.
func TestServeConfigErrors(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "users.json")
	os.WriteFile(good, testDB(t), 0o600)
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte(`[{"name":"x","mailboxes":"nope"}]`), 0o600)
	cfg := filepath.Join(dir, "cfg.json")
	os.WriteFile(cfg, []byte(`{"bogus": 1}`), 0o600)
	state := filepath.Join(dir, "state")
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"no domain", []string{"-db-json", good}, "-domain is required"},
		{"no db", []string{"-domain", "example.org"}, "exactly one of -db"},
		{"both dbs", []string{"-domain", "example.org", "-db", good, "-db-json", good}, "exactly one of -db"},
		{"bad domain", []string{"-domain", "exa mple", "-db-json", good}, "not a domain"},
		{"bad db", []string{"-domain", "example.org", "-db-json", bad, "-state", state}, "invalid user database"},
		{"missing db", []string{"-domain", "example.org", "-db-json", filepath.Join(dir, "none"), "-state", state}, "no such file"},
		{"bad config", []string{"-config", cfg, "-domain", "example.org", "-db-json", good}, `unknown setting "bogus"`},
		{"bad addr", []string{"-domain", "example.org", "-db-json", good, "-mx-addr", "nope"}, "-mx-addr"},
		{"cert without key", []string{"-domain", "example.org", "-db-json", good, "-tls-cert", good}, "go together"},
		{"bad size", []string{"-domain", "example.org", "-db-json", good, "-max-size", "0"}, "-max-size"},
		{"bad flag", []string{"-nope"}, "flag provided but not defined"},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, _, errs := runElit("", append([]string{"serve"}, c.args...)...)
			if code != exitFailure || !strings.Contains(errs, c.want) {
				t.Errorf("exit %d, stderr %q; want 125 and %q", code, errs, c.want)
			}
			if c.name != "bad flag" && strings.Count(strings.TrimSpace(errs), "\n") != 0 {
				t.Errorf("more than one line: %q", errs)
			}
		})
	}
	if code, _, errs := runElit("", "serve", "-h"); code != 0 || !strings.Contains(errs, "-submissions-addr") {
		t.Errorf("serve -h: exit %d\n%s", code, errs)
	}
}

// TestServeDatabase: the database comes from a OneFFS image; a broken
// update leaves the good one in use; SIGHUP picks up a good update; after
// a restart with a broken image the cached copy serves.
func TestServeDatabase(t *testing.T) {
	needTools(t, "swaks")
	dir := t.TempDir()
	img := filepath.Join(dir, "db.img")
	writeImage := func(data []byte) {
		t.Helper()
		if err := os.WriteFile(img, make([]byte, 1<<20), 0o600); err != nil {
			t.Fatal(err)
		}
		im, err := oneffs.Open(img)
		if err != nil {
			t.Fatal(err)
		}
		defer im.Close()
		if err := im.Write(data); err != nil {
			t.Fatal(err)
		}
	}
	writeImage(testDB(t))
	s := startServer(t, "-db", img, "-db-json", "")
	to := func(rcpt string) int {
		code, _ := s.swaks(s.mx, "--from", "x@example.net", "--to", rcpt)
		return code
	}
	if to("din@example.org") != 0 || to("carol@example.org") == 0 {
		t.Fatalf("first database:\n%s", s.logText())
	}
	// A broken image: the good database stays.
	writeImage([]byte(`[{"name": broken`))
	s.cmd.Process.Signal(syscall.SIGHUP)
	waitLog(t, s, "cannot load the user database")
	if to("din@example.org") != 0 {
		t.Errorf("the broken database replaced the good one")
	}
	// A good update with carol.
	writeImage(testDB(t, map[string]any{"name": "carol", "mailboxes": []string{"carol@example.net"}}))
	s.cmd.Process.Signal(syscall.SIGHUP)
	waitLog(t, s, "addresses=4")
	if to("carol@example.org") != 0 {
		t.Errorf("carol unknown after SIGHUP:\n%s", s.logText())
	}
	// Restart on a broken image: the cache serves carol.
	s.stop()
	writeImage([]byte(`not json`))
	s.log.Reset()
	s.start()
	waitLog(t, s, "serving the cached user database")
	if to("carol@example.org") != 0 {
		t.Errorf("carol unknown with the cached database:\n%s", s.logText())
	}
}

func waitLog(t *testing.T, s *server, substr string) {
	t.Helper()
	for range 200 {
		if strings.Contains(s.logText(), substr) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("log never said %q:\n%s", substr, s.logText())
}

// TestServeSelfSigned: with no certificate given, one is made, logged,
// kept and reused.
func TestServeSelfSigned(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "users.json")
	os.WriteFile(db, testDB(t), 0o600)
	s := &server{t: t, state: filepath.Join(dir, "state"), args: []string{"serve", "-domain", "example.org", "-hostname", "mx.example.org",
		"-db-json", db, "-state", filepath.Join(dir, "state"), "-mx-addr", "127.0.0.1:0", "-submission-addr", "127.0.0.1:0", "-submissions-addr", "127.0.0.1:0", "-deliver=false"}}
	s.start()
	t.Cleanup(s.stop)
	if !strings.Contains(s.logText(), "generated a self-signed TLS certificate") {
		t.Errorf("not logged:\n%s", s.logText())
	}
	certPath := filepath.Join(s.state, "tls", "selfsigned.pem")
	first, err := os.ReadFile(certPath)
	if err != nil {
		t.Fatal(err)
	}
	s.stop()
	s.log.Reset()
	s.start()
	again, _ := os.ReadFile(certPath)
	if string(again) != string(first) || strings.Contains(s.logText(), "generated") {
		t.Errorf("the certificate was not reused")
	}
	// It is what the server presents.
	tc, err := tls.Dial("tcp", s.subs, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	if err := tc.ConnectionState().PeerCertificates[0].VerifyHostname("mx.example.org"); err != nil {
		t.Error(err)
	}
}
