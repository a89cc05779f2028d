package main

import (
	"encoding/base64"
	"strings"
	"testing"
)

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
