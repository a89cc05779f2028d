package deliver

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"

	"elit.local/elit/dns"
	"elit.local/elit/queue"
)

// TestResults: each attempt's result is kept in the queue as fields
// (the remote MTA, the step, the reply), LastError sums it up, and a DSN
// says Status, Remote-MTA and Diagnostic-Code from the fields (RFC 3464
// §2.3).
func TestResults(t *testing.T) {
	p := newPeer(t, nil)
	p.OnRcpt = func(to string) error {
		switch {
		case strings.HasPrefix(to, "gone@"):
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
		case strings.HasPrefix(to, "busy@"):
			return &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 2, 2}, Message: "mailbox full"}
		case strings.HasPrefix(to, "plain@"):
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.NoEnhancedCode, Message: "go away"}
		}
		return nil
	}
	addr := "127.0.0.1:" + p.Port
	d := newDeliverer(t, Config{Resolver: loopbackMX("example.com"), Port: p.Port})
	m := &queue.Message{From: "sender@example.net", Recipients: []queue.Recipient{
		{Address: "ok@example.com"}, {Address: "gone@example.com"}, {Address: "busy@example.com"}, {Address: "plain@example.com"},
	}}
	queueMessage(t, d, m)
	before := failuresByStep.Value("RCPT")
	d.process(context.Background(), m.ID)
	got, err := d.cfg.Queue.Get(m.ID)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []struct {
		status    queue.Status
		result    queue.Result
		lastError string
	}{
		{queue.Delivered, queue.Result{RemoteMTA: "mx.example.com", RemoteAddr: addr, Step: "DATA", Code: 250, Enhanced: "2.0.0", Text: "OK: queued"}, ""},
		{queue.Failed, queue.Result{RemoteMTA: "mx.example.com", RemoteAddr: addr, Step: "RCPT", Code: 550, Enhanced: "5.1.1", Text: "no such user", Permanent: true},
			"5.1.1 mx.example.com said at RCPT: 550 no such user"},
		{queue.Pending, queue.Result{RemoteMTA: "mx.example.com", RemoteAddr: addr, Step: "RCPT", Code: 452, Enhanced: "4.2.2", Text: "mailbox full"},
			"4.2.2 mx.example.com said at RCPT: 452 mailbox full"},
		{queue.Failed, queue.Result{RemoteMTA: "mx.example.com", RemoteAddr: addr, Step: "RCPT", Code: 550, Text: "go away", Permanent: true},
			"mx.example.com said at RCPT: 550 go away"},
	} {
		r := got.Recipients[i]
		if r.Status != want.status || r.Result != want.result || r.LastError != want.lastError {
			t.Errorf("%s: %s %+v %q\nwant %s %+v %q", r.Address, r.Status, r.Result, r.LastError, want.status, want.result, want.lastError)
		}
	}
	if n := failuresByStep.Value("RCPT") - before; n != 3 {
		t.Errorf("%d failures at RCPT counted, want 3", n)
	}
	dsn, _ := dsnOf(t, d)
	for _, want := range []string{
		"Final-Recipient: rfc822;gone@example.com\r\nAction: failed\r\nStatus: 5.1.1\r\nRemote-MTA: dns; mx.example.com\r\nDiagnostic-Code: smtp; 550 5.1.1 no such user\r\n",
		// No enhanced code in the reply: the class's generic status.
		"Final-Recipient: rfc822;plain@example.com\r\nAction: failed\r\nStatus: 5.0.0\r\nRemote-MTA: dns; mx.example.com\r\nDiagnostic-Code: smtp; 550 go away\r\n",
	} {
		if !strings.Contains(dsn, want) {
			t.Errorf("the DSN lacks\n%s\n%s", want, dsn)
		}
	}
	if strings.Contains(dsn, "busy@") || strings.Contains(dsn, "ok@") {
		t.Errorf("the DSN reports a recipient not failed:\n%s", dsn)
	}
}

// TestResultsOfOurs: failures with no reply are ours: a step, our
// enhanced code, no Remote-MTA in the DSN but our diagnostic.
func TestResultsOfOurs(t *testing.T) {
	for _, c := range []struct {
		name   string
		cfg    Config
		result queue.Result
		dsn    string // in the DSN, when the failure is permanent
	}{
		{"connection refused", Config{Resolver: loopbackMX("example.com"), Port: "1",
			Dial: func(context.Context, string, string) (net.Conn, error) { return nil, errors.New("connection refused") }},
			queue.Result{RemoteMTA: "mx.example.com", RemoteAddr: "127.0.0.1:1", Step: "connect", Enhanced: "4.4.1",
				Text: "connecting to mx.example.com (127.0.0.1:1): connection refused"}, ""},
		{"no such domain", Config{Resolver: &dns.Mem{}},
			queue.Result{Enhanced: "5.1.2", Text: "domain example.com does not exist", Permanent: true},
			"Status: 5.1.2\r\nDiagnostic-Code: x-elit; 5.1.2 domain example.com does not exist\r\n"},
		{"SERVFAIL", Config{Resolver: &dns.Mem{Fail: map[string]error{"example.com": errors.New("SERVFAIL")}}},
			queue.Result{Enhanced: "4.4.3", Text: "looking up the MX of example.com: SERVFAIL"}, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := newDeliverer(t, c.cfg)
			m := &queue.Message{From: "sender@example.net", Recipients: []queue.Recipient{
				{Address: "a@example.com"}, {Address: "h@example.com", Status: queue.Held}, // keeps the message queued
			}}
			queueMessage(t, d, m)
			d.process(context.Background(), m.ID)
			got, err := d.cfg.Queue.Get(m.ID)
			if err != nil {
				t.Fatal(err)
			}
			if r := got.Recipients[0]; r.Result != c.result || r.LastError != c.result.Enhanced+" "+c.result.Text {
				t.Errorf("%+v %q\nwant %+v", r.Result, r.LastError, c.result)
			}
			if c.dsn != "" {
				if dsn, _ := dsnOf(t, d); !strings.Contains(dsn, c.dsn) || strings.Contains(dsn, "Remote-MTA") {
					t.Errorf("the DSN lacks %q or has a Remote-MTA:\n%s", c.dsn, dsn)
				}
			}
		})
	}
}

// TestDSNOldEnvelope: a failure recorded by a version without results
// (LastError only, as "host said at STEP: reply") is reported with the
// generic status of its class and LastError as our diagnostic: its text
// is not parsed.
func TestDSNOldEnvelope(t *testing.T) {
	d := newDeliverer(t, Config{Resolver: &dns.Mem{}})
	m := &queue.Message{From: "sender@example.net", Recipients: []queue.Recipient{
		{Address: "a@example.com", Status: queue.Failed, Attempts: 1, LastError: "5.1.1 mx.example.com said at RCPT: 550 no such user"},
	}}
	queueMessage(t, d, m)
	d.process(context.Background(), m.ID)
	if _, err := d.cfg.Queue.Get(m.ID); !errors.Is(err, queue.ErrNotFound) {
		t.Errorf("the reported message is still queued (%v)", err)
	}
	dsn, _ := dsnOf(t, d)
	want := "Status: 5.0.0\r\nDiagnostic-Code: x-elit; 5.1.1 mx.example.com said at RCPT: 550 no such user\r\n"
	if !strings.Contains(dsn, want) || strings.Contains(dsn, "Remote-MTA") {
		t.Errorf("the DSN lacks %q or has a Remote-MTA:\n%s", want, dsn)
	}
}

// users is a user database for DSNs to local senders.
type users struct{}

func (users) Domain() string                   { return "example.org" }
func (users) IsLocalDomain(domain string) bool { return domain == "example.org" }
func (users) Expand(address string) ([]string, error) {
	if address == "list@example.org" {
		return []string{"a@example.com", "b@example.net"}, nil
	}
	return nil, errors.New("no such user")
}

// TestDSNToLocalSender: a DSN to a local sender goes to the sender's
// mailboxes, from MAILER-DAEMON at the database's domain; with no
// database in use (a nil one), to the sender as it is.
func TestDSNToLocalSender(t *testing.T) {
	for _, c := range []struct {
		name  string
		users func() Users
		from  string
		to    []string
	}{
		{"expanded", func() Users { return users{} }, "MAILER-DAEMON@example.org", []string{"a@example.com", "b@example.net"}},
		{"no database", CurrentUsers(func() *users { return nil }), "MAILER-DAEMON@mx.example.org", []string{"list@example.org"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := newDeliverer(t, Config{Resolver: &dns.Mem{}, Users: c.users})
			m := &queue.Message{From: "list@example.org", Recipients: []queue.Recipient{{Address: "x@nowhere.example"}}}
			queueMessage(t, d, m)
			d.process(context.Background(), m.ID)
			dsn, to := dsnOf(t, d)
			var got []string
			for _, r := range to {
				got = append(got, r.Address)
				if r.Address != "list@example.org" && r.Original != "list@example.org" {
					t.Errorf("%s: original %q", r.Address, r.Original)
				}
			}
			if strings.Join(got, " ") != strings.Join(c.to, " ") {
				t.Errorf("the DSN goes to %q, want %q", got, c.to)
			}
			if !strings.Contains(dsn, "From: Mail Delivery System <"+c.from+">\r\n") {
				t.Errorf("the DSN is not from %s:\n%s", c.from, dsn)
			}
		})
	}
}
