package smtpclient

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"strings"
	"testing"
	"time"

	"elit.local/elit/reply"
)

const hello = `
	S: 220 mx.example.com ESMTP
	C: EHLO client.example.org`

// env is a transaction to a@example.com and b@example.com.
var env = Envelope{From: "s@example.org", MailParams: []string{"SIZE=22"}, Rcpts: []Rcpt{
	{To: "a@example.com", Params: []string{"NOTIFY=FAILURE"}}, {To: "b@example.com"},
}}

const msg = "Subject: x\r\n\r\nhello\r\n"

// wantErr checks that err is an *Error at step with a reply of code (0:
// none, the session broke).
func wantErr(t *testing.T, what string, err error, step Step, code int) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Errorf("%s: %v, want an *Error at %s", what, err, step)
		return
	}
	got := 0
	if e.Reply != nil {
		got = e.Reply.Code
	}
	if e.Step != step || got != code || e.Permanent() != (code >= 500) {
		t.Errorf("%s: %v (step %s, code %d, permanent %v), want step %s, code %d", what, e, e.Step, got, e.Permanent(), step, code)
	}
}

func TestHello(t *testing.T) {
	p, c := session(t, hello+`
		S: 250-mx.example.com greets client.example.org
		S: 250-SIZE 10240000
		S: 250-pipelining
		S: 250 8BITMIME`)
	if v, ok := c.Extension("SIZE"); !ok || v != "10240000" {
		t.Errorf("SIZE: %q %v", v, ok)
	}
	for _, ext := range []string{"PIPELINING", "8BITMIME"} {
		if _, ok := c.Extension(ext); !ok {
			t.Errorf("no %s", ext)
		}
	}
	if _, ok := c.Extension("CHUNKING"); ok {
		t.Error("CHUNKING, which the server does not have")
	}
	c.Close()
	p.wait(t)
}

// TestHelloFallback: a server that does not know EHLO (5xx) gets HELO
// (RFC 5321 §3.2), and has no extensions.
func TestHelloFallback(t *testing.T) {
	p, c := session(t, hello+`
		S: 502 5.5.1 what?
		C: HELO client.example.org
		S: 250 mx.example.com`)
	if len(c.ext) != 0 {
		t.Errorf("extensions after HELO: %v", c.ext)
	}
	c.Close()
	p.wait(t)
}

// TestPipelining: MAIL, the RCPTs and DATA go in one group (the peer
// reads all four before it answers any), then the data, dot-stuffed.
func TestPipelining(t *testing.T) {
	p, c := session(t, hello+`
		S: 250-mx.example.com
		S: 250 PIPELINING
		C: MAIL FROM:<s@example.org> SIZE=22
		C: RCPT TO:<a@example.com> NOTIFY=FAILURE
		C: RCPT TO:<b@example.com>
		C: DATA
		S: 250 2.1.0 sender ok
		S: 250 2.1.5 a ok
		S: 550 5.1.1 no b here
		S: 354 go ahead
		C: Subject: x
		C:
		C: hello
		C: .
		S: 250 2.0.0 queued as 42
		C: QUIT
		S: 221 2.0.0 bye`)
	final, errs := c.Transaction(env, strings.NewReader(msg), int64(len(msg)))
	if errs[0] != nil || final == nil || final.Code != 250 || final.Enhanced != (reply.Enhanced{2, 0, 0}) || final.Text != "queued as 42" {
		t.Errorf("a: %v, final reply %+v", errs[0], final)
	}
	wantErr(t, "b", errs[1], StepRCPT, 550)
	c.Quit()
	p.wait(t)
}

// TestLockStep: without PIPELINING each command waits for its reply.
func TestLockStep(t *testing.T) {
	p, c := session(t, hello+`
		S: 250 mx.example.com
		C: MAIL FROM:<s@example.org> SIZE=22
		S: 250 ok
		C: RCPT TO:<a@example.com> NOTIFY=FAILURE
		S: 250 ok
		C: RCPT TO:<b@example.com>
		S: 250 ok
		C: DATA
		S: 354 go ahead
		C: Subject: x
		C:
		C: hello
		C: .
		S: 250 queued`)
	final, errs := c.Transaction(env, strings.NewReader(msg), int64(len(msg)))
	if errs[0] != nil || errs[1] != nil || final.Code != 250 {
		t.Errorf("%v %v", errs, final)
	}
	c.Close()
	p.wait(t)
}

// TestBDAT: with CHUNKING the data goes in BDAT chunks of 1 MiB, the
// last one marked LAST (RFC 3030), MAIL and RCPT still pipelined.
func TestBDAT(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789abcde\n"), bdatChunk/16+1) // a chunk and 16 bytes
	p, c := session(t, hello+`
		S: 250-mx.example.com
		S: 250-PIPELINING
		S: 250 CHUNKING
		C: MAIL FROM:<s@example.org> SIZE=22
		C: RCPT TO:<a@example.com> NOTIFY=FAILURE
		C: RCPT TO:<b@example.com>
		S: 250 ok
		S: 250 ok
		S: 250 ok
		C: BDAT 1048576
		B: 1048576
		S: 250 2.0.0 1048576 octets
		C: BDAT 16 LAST
		B: 16
		S: 250 2.0.0 queued`)
	final, errs := c.Transaction(env, bytes.NewReader(data), int64(len(data)))
	if errs[0] != nil || errs[1] != nil || final.Text != "queued" {
		t.Errorf("%v %+v", errs, final)
	}
	c.Close()
	p.wait(t)
	if got := p.received(); !bytes.Equal(got, data) {
		t.Errorf("the peer got %d bytes, not the %d sent", len(got), len(data))
	}
}

// TestDotStuffing: a line that starts with a dot gets another (RFC 5321
// §4.5.2), only at the start of a line, and a message that does not end
// in CRLF gets one before the final dot.
func TestDotStuffing(t *testing.T) {
	long := strings.Repeat("x", 64<<10) + ".not at the start" // a dot just past dotStuff's buffer
	data := "Subject: dots\r\n\r\n.hidden\r\n..two\r\n.\r\nmid.dle\r\n" + long + "\r\n.\r\nno line break at the end"
	p, c := session(t, hello+`
		S: 250 mx.example.com
		C: MAIL FROM:<s@example.org>
		S: 250 ok
		C: RCPT TO:<a@example.com>
		S: 250 ok
		C: DATA
		S: 354 go ahead
		C: Subject: dots
		C:
		C: ..hidden
		C: ...two
		C: ..
		C: mid.dle
		C: `+long+`
		C: ..
		C: no line break at the end
		C: .
		S: 250 queued`)
	e := Envelope{From: "s@example.org", Rcpts: []Rcpt{{To: "a@example.com"}}}
	if _, errs := c.Transaction(e, strings.NewReader(data), int64(len(data))); errs[0] != nil {
		t.Error(errs[0])
	}
	c.Close()
	p.wait(t)
}

// TestMultilineReply: the lines of a reply are one text, each line's
// enhanced code (RFC 2034 §4) taken off.
func TestMultilineReply(t *testing.T) {
	p, c := session(t, hello+`
		S: 250 mx.example.com
		C: MAIL FROM:<s@example.org>
		S: 550-5.7.1 [192.0.2.1] Our system has detected
		S: 550-5.7.1 an unusual rate of mail.
		S: 550 5.7.1 https://example.com/why
		C: RSET
		S: 250 ok`)
	_, errs := c.Transaction(Envelope{From: "s@example.org", Rcpts: []Rcpt{{To: "a@example.com"}}}, strings.NewReader(msg), 1)
	wantErr(t, "MAIL", errs[0], StepMAIL, 550)
	r, _ := reply.As(errs[0])
	if want := "550 5.7.1 [192.0.2.1] Our system has detected an unusual rate of mail. https://example.com/why"; r == nil || r.Error() != want {
		t.Errorf("reply %v, want %q", r, want)
	}
	c.Close()
	p.wait(t)
}

// TestErrors: a temporary and a permanent refusal at each step, each an
// *Error with the step, the reply and its class.
func TestErrors(t *testing.T) {
	mailRcpt := `
		S: 250 mx.example.com
		C: MAIL FROM:<s@example.org>
		S: 250 ok
		C: RCPT TO:<a@example.com>`
	for _, c := range []struct {
		name   string
		script string
		step   Step
		code   int
	}{
		{"greeting 421", `S: 421 4.3.2 busy`, StepGreeting, 421},
		{"greeting 554", `S: 554 5.7.1 go away`, StepGreeting, 554},
		{"EHLO 421", hello + `
			S: 421 4.3.2 busy`, StepEHLO, 421},
		{"HELO 550", hello + `
			S: 500 no EHLO
			C: HELO client.example.org
			S: 550 no HELO either`, StepEHLO, 550},
		{"MAIL 451", hello + `
			S: 250 mx.example.com
			C: MAIL FROM:<s@example.org>
			S: 451 4.3.0 later
			C: RSET
			S: 250 ok`, StepMAIL, 451},
		{"MAIL 553", hello + `
			S: 250 mx.example.com
			C: MAIL FROM:<s@example.org>
			S: 553 5.1.8 bad sender
			C: RSET
			S: 250 ok`, StepMAIL, 553},
		{"RCPT 450", hello + mailRcpt + `
			S: 450 4.2.1 mailbox busy
			C: RSET
			S: 250 ok`, StepRCPT, 450},
		{"RCPT 550", hello + mailRcpt + `
			S: 550 5.1.1 no such user
			C: RSET
			S: 250 ok`, StepRCPT, 550},
		{"DATA 451", hello + mailRcpt + `
			S: 250 ok
			C: DATA
			S: 451 4.3.0 not now`, StepDATA, 451},
		{"DATA 554", hello + mailRcpt + `
			S: 250 ok
			C: DATA
			S: 554 5.5.0 no`, StepDATA, 554},
		{"end of data 452", hello + mailRcpt + `
			S: 250 ok
			C: DATA
			S: 354 go ahead
			C: "Subject: x\r\n\r\nhello\r\n.\r\n"
			S: 452 4.3.1 disk full`, StepDATA, 452},
		{"end of data 552", hello + mailRcpt + `
			S: 250 ok
			C: DATA
			S: 354 go ahead
			C: "Subject: x\r\n\r\nhello\r\n.\r\n"
			S: 552 5.3.4 too big`, StepDATA, 552},
		{"closed after MAIL", hello + `
			S: 250 mx.example.com
			C: MAIL FROM:<s@example.org>
			S: 250 ok
			close`, StepRCPT, 0},
		{"closed in a reply", hello + mailRcpt + `
			S: "250-ok\r\n"
			close`, StepRCPT, 0},
		{"closed after DATA", hello + mailRcpt + `
			S: 250 ok
			C: DATA
			S: 354 go ahead
			close`, StepDATA, 0},
		{"malformed reply", hello + `
			S: 250 mx.example.com
			C: MAIL FROM:<s@example.org>
			S: 2x0 what`, StepMAIL, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := newPeer(t, c.script)
			cl := p.client(context.Background())
			err := cl.Hello("client.example.org")
			if err == nil {
				_, errs := cl.Transaction(Envelope{From: "s@example.org", Rcpts: []Rcpt{{To: "a@example.com"}}}, strings.NewReader(msg), int64(len(msg)))
				err = errs[0]
			}
			wantErr(t, c.name, err, c.step, c.code)
			cl.Close()
			p.wait(t)
		})
	}
}

// TestStall: a peer that stops answering is given up on as soon as the
// context is cancelled, though each step has a minute.
func TestStall(t *testing.T) {
	for _, at := range []string{"greeting", "DATA"} {
		t.Run(at, func(t *testing.T) {
			script := "stall"
			if at == "DATA" {
				script = hello + `
					S: 250 mx.example.com
					C: MAIL FROM:<s@example.org>
					S: 250 ok
					C: RCPT TO:<a@example.com>
					S: 250 ok
					C: DATA
					S: 354 go ahead
					stall`
			}
			p := newPeer(t, script)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			c := New(ctx, p.conn, time.Minute)
			done := make(chan error, 1)
			go func() {
				err := c.Hello("client.example.org")
				if err == nil {
					var errs []error
					_, errs = c.Transaction(Envelope{From: "s@example.org", Rcpts: []Rcpt{{To: "a@example.com"}}}, strings.NewReader(msg), int64(len(msg)))
					err = errs[0]
				}
				done <- err
			}()
			time.Sleep(100 * time.Millisecond)
			cancel()
			select {
			case err := <-done:
				if err == nil {
					t.Fatal("no error")
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the session went on after the cancellation (a step has a minute)")
			}
			c.Quit() // fails at once too
			p.wait(t)
		})
	}
}

// TestStartTLS: STARTTLS, the handshake, and EHLO again, with the
// extensions said before TLS forgotten (RFC 3207 §4.2).
func TestStartTLS(t *testing.T) {
	p, c := session(t, hello+`
		S: 250-mx.example.com
		S: 250-STARTTLS
		S: 250 AUTH PLAIN
		C: STARTTLS
		S: 220 2.0.0 go ahead
		tls
		C: EHLO client.example.org
		S: 250-mx.example.com
		S: 250 SIZE 100`)
	if err := c.StartTLS(&tls.Config{ServerName: "mx.example.com", InsecureSkipVerify: true}); err != nil {
		t.Fatal(err)
	}
	if cs, ok := c.TLS(); !ok || cs.Version < tls.VersionTLS12 {
		t.Errorf("TLS: %v %v", cs.Version, ok)
	}
	if _, ok := c.Extension("AUTH"); ok {
		t.Error("AUTH said before TLS is remembered")
	}
	if _, ok := c.Extension("SIZE"); !ok {
		t.Error("SIZE said in TLS is not known")
	}
	c.Close()
	p.wait(t)
}

// TestStartTLSFailures: a refused STARTTLS and a certificate that does
// not verify are errors at StepSTARTTLS.
func TestStartTLSFailures(t *testing.T) {
	ehlo := hello + `
		S: 250-mx.example.com
		S: 250 STARTTLS
		C: STARTTLS`
	p, c := session(t, ehlo+`
		S: 454 4.7.0 TLS not available`)
	wantErr(t, "refused", c.StartTLS(&tls.Config{ServerName: "mx.example.com"}), StepSTARTTLS, 454)
	c.Close()
	p.wait(t)

	p, c = session(t, ehlo+`
		S: 220 go ahead
		tlsfail`)
	err := c.StartTLS(&tls.Config{ServerName: "mx.example.com"}) // not signed by a known CA
	wantErr(t, "unverified", err, StepSTARTTLS, 0)
	c.Close()
	p.wait(t)
}

// TestImplicitTLS: Handshake before Hello (RFC 8314 §3).
func TestImplicitTLS(t *testing.T) {
	p := newPeer(t, "tls\n"+hello+`
		S: 250 mx.example.com`)
	c := p.client(context.Background())
	if err := c.Handshake(&tls.Config{ServerName: "mx.example.com", InsecureSkipVerify: true}); err != nil {
		t.Fatal(err)
	}
	if err := c.Hello("client.example.org"); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.TLS(); !ok {
		t.Error("no TLS")
	}
	c.Close()
	p.wait(t)
}

// TestAuth: Login picks the strongest mechanism offered that it knows,
// or the one asked for; a challenge that is not base64 cancels the
// exchange ("*", RFC 4954 §4); a refusal is an *Error at StepAUTH.
func TestAuth(t *testing.T) {
	for _, c := range []struct {
		name, mech, script string
		want               string // the mechanism used
		code               int    // of the error; -1 none
	}{
		{"PLAIN", "", `
			S: 250-mx.example.com
			S: 250 AUTH PLAIN DIGEST-MD5
			C: AUTH PLAIN AHVzZXIAcGFzc3dvcmQ=
			S: 235 2.7.0 ok`, "PLAIN", -1},
		{"LOGIN asked", "login", `
			S: 250-mx.example.com
			S: 250 AUTH PLAIN LOGIN
			C: AUTH LOGIN
			S: 334 VXNlcm5hbWU6
			C: dXNlcg==
			S: 334 UGFzc3dvcmQ6
			C: cGFzc3dvcmQ=
			S: 235 2.7.0 ok`, "LOGIN", -1},
		{"refused", "", `
			S: 250-mx.example.com
			S: 250 AUTH LOGIN
			C: AUTH LOGIN
			S: 334 VXNlcm5hbWU6
			C: dXNlcg==
			S: 334 UGFzc3dvcmQ6
			C: cGFzc3dvcmQ=
			S: 535 5.7.8 bad credentials`, "LOGIN", 535},
		{"temporary", "PLAIN", `
			S: 250-mx.example.com
			S: 250 AUTH PLAIN
			C: AUTH PLAIN AHVzZXIAcGFzc3dvcmQ=
			S: 454 4.7.0 try later`, "PLAIN", 454},
		{"bad challenge", "", `
			S: 250-mx.example.com
			S: 250 AUTH CRAM-MD5
			C: AUTH CRAM-MD5
			S: 334 !!!
			C: *
			S: 501 5.0.0 cancelled`, "CRAM-MD5", 0},
		{"none we know", "", `
			S: 250-mx.example.com
			S: 250 AUTH GSSAPI`, "", 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			p, cl := session(t, hello+"\n"+c.script)
			mech, err := cl.Login("user", "password", c.mech)
			if mech != c.want {
				t.Errorf("mechanism %q, want %q", mech, c.want)
			}
			if c.code < 0 && err != nil {
				t.Error(err)
			} else if c.code >= 0 {
				wantErr(t, c.name, err, StepAUTH, c.code)
			}
			cl.Close()
			p.wait(t)
		})
	}
}

// TestNobodyAccepted: when every RCPT is refused in a pipelined group,
// the DATA that went with it is answered with an empty message if the
// server takes it (RFC 2920 §3.1), and the session is reset.
func TestNobodyAccepted(t *testing.T) {
	p, c := session(t, hello+`
		S: 250-mx.example.com
		S: 250 PIPELINING
		C: MAIL FROM:<s@example.org>
		C: RCPT TO:<a@example.com>
		C: DATA
		S: 250 ok
		S: 550 5.1.1 no
		S: 354 go ahead anyway
		C: .
		S: 554 5.5.1 no valid recipients
		C: RSET
		S: 250 ok`)
	final, errs := c.Transaction(Envelope{From: "s@example.org", Rcpts: []Rcpt{{To: "a@example.com"}}}, strings.NewReader(msg), int64(len(msg)))
	if final != nil {
		t.Errorf("final reply %v", final)
	}
	wantErr(t, "RCPT", errs[0], StepRCPT, 550)
	c.Close()
	p.wait(t)
}

// TestReset: RSET between transactions on a kept session (RFC 5321
// §4.1.1.5) shows whether the server is still there; a 421 (§3.8) or a
// closed connection leaves the session unusable, as does a break in a
// transaction.
func TestReset(t *testing.T) {
	for _, c := range []struct {
		name       string
		script     string
		code       int  // of the error; -1: none
		usable     bool // after Reset
		transacted bool // a transaction ran before Reset
	}{
		{name: "answered", script: `
			C: RSET
			S: 250 2.0.0 ok`, code: -1, usable: true},
		{name: "after a transaction", transacted: true, script: `
			C: MAIL FROM:<s@example.org> SIZE=22
			C: RCPT TO:<a@example.com> NOTIFY=FAILURE
			C: RCPT TO:<b@example.com>
			C: DATA
			S: 250 2.1.0 ok
			S: 250 2.1.5 ok
			S: 250 2.1.5 ok
			S: 354 go ahead
			C: Subject: x
			C:
			C: hello
			C: .
			S: 250 2.0.0 queued
			C: RSET
			S: 250 2.0.0 ok`, code: -1, usable: true},
		{name: "closing", script: `
			C: RSET
			S: 421 4.4.2 idle too long`, code: 421},
		{name: "closed", script: `
			close`, code: 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			p, cl := session(t, hello+`
				S: 250-mx.example.com
				S: 250 PIPELINING`+c.script)
			if c.transacted {
				if _, errs := cl.Transaction(env, strings.NewReader(msg), int64(len(msg))); errs[0] != nil || errs[1] != nil || !cl.Usable() {
					t.Fatalf("transaction: %v, usable %v", errs, cl.Usable())
				}
			}
			err := cl.Reset()
			if c.code < 0 && err != nil {
				t.Errorf("Reset: %v", err)
			} else if c.code >= 0 {
				wantErr(t, "Reset", err, StepRSET, c.code)
			}
			if cl.Usable() != c.usable {
				t.Errorf("usable %v, want %v", cl.Usable(), c.usable)
			}
			cl.Close()
			if cl.Usable() {
				t.Error("usable after Close")
			}
			p.wait(t)
		})
	}
}

// TestResetWithNext: with PIPELINING the RSET goes in the next
// transaction's group (RFC 2920 §3.1), its reply read first; a 421 or a
// closed connection fails every recipient at StepRSET, before any data,
// and leaves the session unusable. Without PIPELINING it is Reset.
func TestResetWithNext(t *testing.T) {
	group := `
			C: RSET
			C: MAIL FROM:<s@example.org> SIZE=22
			C: RCPT TO:<a@example.com> NOTIFY=FAILURE
			C: RCPT TO:<b@example.com>
			C: DATA`
	for _, c := range []struct {
		name, ehlo, script string
		code               int // of the error at StepRSET; -1: none
	}{
		{"pipelined", "250 PIPELINING", group + `
			S: 250 2.0.0 ok
			S: 250 2.1.0 ok
			S: 250 2.1.5 ok
			S: 250 2.1.5 ok
			S: 354 go ahead
			C: Subject: x
			C:
			C: hello
			C: .
			S: 250 2.0.0 queued`, -1},
		{"closing", "250 PIPELINING", group + `
			S: 421 4.4.2 idle too long`, 421},
		{"closed", "250 PIPELINING", group + `
			close`, 0},
		{"lock step", "250 8BITMIME", `
			C: RSET
			S: 250 2.0.0 ok
			C: MAIL FROM:<s@example.org> SIZE=22
			S: 250 2.1.0 ok
			C: RCPT TO:<a@example.com> NOTIFY=FAILURE
			S: 250 2.1.5 ok
			C: RCPT TO:<b@example.com>
			S: 250 2.1.5 ok
			C: DATA
			S: 354 go ahead
			C: Subject: x
			C:
			C: hello
			C: .
			S: 250 2.0.0 queued`, -1},
	} {
		t.Run(c.name, func(t *testing.T) {
			p, cl := session(t, hello+`
				S: 250-mx.example.com
				S: `+c.ehlo+c.script)
			if err := cl.ResetWithNext(); err != nil {
				t.Fatalf("ResetWithNext: %v", err)
			}
			final, errs := cl.Transaction(env, strings.NewReader(msg), int64(len(msg)))
			if c.code < 0 {
				if errs[0] != nil || errs[1] != nil || final == nil || final.Code != 250 {
					t.Errorf("transaction: %v, %+v", errs, final)
				}
			} else {
				wantErr(t, "a", errs[0], StepRSET, c.code)
				wantErr(t, "b", errs[1], StepRSET, c.code)
				if cl.Usable() {
					t.Error("usable after the RSET failed")
				}
			}
			cl.Close()
			p.wait(t)
		})
	}
}
