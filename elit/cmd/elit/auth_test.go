package main

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"net/smtp"
	"os"
	"strings"
	"testing"

	"elit.local/elit/smtpclient"
	"github.com/emersion/go-sasl"
)

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

func dialTLS(t *testing.T, s *proc) *tls.Conn {
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

// scramPlus is elit/smtpclient's SCRAM-SHA-256-PLUS client bound to tc, as a
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
	return netSMTPAuth{smtpclient.NewChannelBindingClient(user, password, cbType, cb)}
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
