// Package decide is the middle job of Elit, between receiving a message
// (elit/receive speaks SMTP) and queueing it (elit/queue): an ordered list
// of steps, each looking at the transaction at MAIL, at every RCPT and at
// the end of DATA, and each able to refuse it with an SMTP reply
// (reply.Reply), to rewrite its envelope (the sender, the recipients) or
// to add header fields above our Received field.
//
// The protocol stays in elit/receive (syntax, SMTPUTF8, sizes, the bare
// CR/LF refusal, AUTH); what to accept and where it goes is decided here.
// The steps of today (elit/policy: recipient routing and relay refusal,
// the submission sender binding, the hop count, SRS, list bounces) and
// those to come (SPF, DKIM, DMARC, ARC) all have the one interface, Step.
package decide

import (
	"context"
	"crypto/tls"
	"io"
	"net/netip"
	"slices"
	"strings"

	"elit.local/elit/mailaddr"
	"elit.local/elit/queue"
	"elit.local/elit/reply"
)

// Session is what the steps know of the SMTP session a transaction is in.
type Session struct {
	Listener string     // "mx", "submission" or "submissions"
	Client   netip.Addr // the client's address
	Helo     string     // the HELO/EHLO name, as given
	// TLS is the connection's TLS state, nil without TLS.
	TLS *tls.ConnectionState
	// User is the login of the authenticated user, "" without AUTH (on
	// the MX, always).
	User string
}

// Params are the MAIL parameters a step may look at (RFC 5321 §4.1.1.2
// and its extensions).
type Params struct {
	UTF8       bool   // SMTPUTF8 (RFC 6531)
	Body       string // BODY: 7BIT, 8BITMIME, BINARYMIME (RFC 6152, RFC 3030)
	Size       int64  // SIZE as declared (RFC 1870), 0 if not
	Ret        string // RET (RFC 3461)
	EnvID      string // ENVID (RFC 3461)
	RequireTLS bool   // REQUIRETLS (RFC 8689)
}

// Transaction is one message being received, as the steps see it and
// change it.
type Transaction struct {
	Session *Session
	Params  Params
	// From is the envelope sender, "" for the null sender. A step may
	// rewrite it (SRS); OrigFrom then keeps the sender as received.
	From     string
	OrigFrom string
	// Rcpts are the RCPT addresses accepted so far, as given.
	Rcpts []string
	// Recipients are where the message goes: the accepted RCPTs as the
	// steps routed them (a list expands to its members).
	Recipients []queue.Recipient
	// Fields are header fields to put above our Received field, in this
	// order: each a whole field, "Name: value", folded with CRLF and
	// ending with CRLF.
	Fields []string
	// ClientName is the client's host name confirmed by reverse DNS
	// (iprev, RFC 8601 §3), "" when none, and ClientNameSecure says
	// that DNSSEC authenticated it: our Received field's TCP-info (RFC
	// 5321 §4.4) shows both.
	ClientName       string
	ClientNameSecure bool
	// NoMessage is the text of the 250 reply when the transaction ends
	// with no recipient to queue (a bounce consumed by a step, say).
	NoMessage string

	accepted []func() // run once the transaction is accepted
	seen     map[string]bool
	removed  []int // indexes in the header of fields to leave out
}

// NewTransaction starts a transaction for the sender from.
func NewTransaction(s *Session, from string, p Params) *Transaction {
	return &Transaction{Session: s, From: from, Params: p}
}

// Route adds where an accepted RCPT goes: each target once per
// transaction, whatever RCPT it came from (a list member also named
// directly, say). rcpt is the RCPT it came from, list the mailing list
// when targets are its members.
func (t *Transaction) Route(rcpt *Rcpt, list string, targets ...string) {
	if t.seen == nil {
		t.seen = map[string]bool{}
	}
	for _, a := range targets {
		key := strings.ToLower(a)
		if p, err := mailaddr.Parse(a); err == nil {
			key = p.Canonical()
		}
		if t.seen[key] {
			continue
		}
		t.seen[key] = true
		r := queue.Recipient{Address: a, Notify: rcpt.Notify, ORcpt: rcpt.ORcpt, List: list}
		if a != rcpt.Address {
			r.Original = rcpt.Address
		}
		t.Recipients = append(t.Recipients, r)
	}
	rcpt.routed = true
}

// Consume accepts rcpt without a recipient to queue: a step takes care
// of it (a bounce that is recorded, say).
func (t *Transaction) Consume(rcpt *Rcpt) { rcpt.routed = true }

// RemoveField leaves the field at index i of the message's header
// (Message.Header) out of what is queued: a forged Authentication-Results
// field that claims to be ours, say (RFC 8601 §5). It is rare, and costs
// a copy of the message.
func (t *Transaction) RemoveField(i int) {
	if !slices.Contains(t.removed, i) {
		t.removed = append(t.removed, i)
	}
}

// Removed returns the indexes of the fields to leave out, in order.
func (t *Transaction) Removed() []int {
	return slices.Sorted(slices.Values(t.removed))
}

// OnAccept runs fn once the transaction is accepted: after the message
// is queued, or at the end of DATA when there is nothing to queue. It
// does not run for a transaction refused or abandoned.
func (t *Transaction) OnAccept(fn func()) { t.accepted = append(t.accepted, fn) }

// Accepted runs what OnAccept registered. The server calls it.
func (t *Transaction) Accepted() {
	for _, fn := range t.accepted {
		fn()
	}
	t.accepted = nil
}

// Rcpt is one RCPT command.
type Rcpt struct {
	// Address is the forward path as given (RFC 5321 §4.1.1.3), without
	// angle brackets; "Postmaster" without a domain is one.
	Address string
	// Addr is Address parsed; for "Postmaster" its Domain is "".
	Addr mailaddr.Address
	// DSN parameters (RFC 3461 §4): NOTIFY as "SUCCESS,DELAY", ORCPT as
	// "type;address" decoded.
	Notify, ORcpt string

	routed bool
}

// Routed reports whether a step has taken the recipient.
func (r *Rcpt) Routed() bool { return r.routed }

// Message is the received message at the end of DATA, before it is
// queued.
type Message struct {
	// Header is the message's header section as received, unfolded
	// (RFC 5322 §2.2.3). A field longer than the server keeps has Long
	// set and an empty Value.
	Header []Field
	// Size is the size of the message as received, in bytes.
	Size int64
	// Open reads the message as received (header and body) from where it
	// is spooled: no second read from the network.
	Open func() io.Reader
}

// Field is a header field.
type Field struct {
	Name  string // as written
	Value string // after the colon, unfolded
	Long  bool   // too long to keep: Value is empty
	// Start and End are the field's bytes in the message as received, its
	// folded lines and final CRLF included.
	Start, End int64
}

// Values returns the values of the fields named name (case-insensitive),
// in order.
func (m *Message) Values(name string) []Field {
	var out []Field
	for _, f := range m.Header {
		if strings.EqualFold(f.Name, name) {
			out = append(out, f)
		}
	}
	return out
}

// Step is one decision. Each method returns nil to go on, or an error:
// a *reply.Reply refuses the command with that reply; any other error
// is a failure of ours (a temporary 451 to the client). Rcpt is called
// only while no earlier step has routed the recipient.
type Step interface {
	Mail(ctx context.Context, t *Transaction) error
	Rcpt(ctx context.Context, t *Transaction, r *Rcpt) error
	Data(ctx context.Context, t *Transaction, m *Message) error
}

// Nop is a Step that does nothing: embed it and write the methods a step
// needs.
type Nop struct{}

func (Nop) Mail(context.Context, *Transaction) error           { return nil }
func (Nop) Rcpt(context.Context, *Transaction, *Rcpt) error    { return nil }
func (Nop) Data(context.Context, *Transaction, *Message) error { return nil }

// Steps runs steps in order.
type Steps []Step

// ErrNotRouted refuses a recipient that no step took: whatever is not
// explicitly ours or allowed is not relayed.
var ErrNotRouted = reply.New(554, reply.Enhanced{5, 7, 1}, "Relay access denied")

// Mail runs the steps at MAIL.
func (s Steps) Mail(ctx context.Context, t *Transaction) error {
	for _, st := range s {
		if err := st.Mail(ctx, t); err != nil {
			return err
		}
	}
	return nil
}

// Rcpt runs the steps at RCPT until one routes the recipient or refuses
// it; none routing it is ErrNotRouted. An accepted RCPT is added to
// t.Rcpts.
func (s Steps) Rcpt(ctx context.Context, t *Transaction, r *Rcpt) error {
	for _, st := range s {
		if err := st.Rcpt(ctx, t, r); err != nil {
			return err
		}
		if r.routed {
			t.Rcpts = append(t.Rcpts, r.Address)
			return nil
		}
	}
	return ErrNotRouted
}

// Data runs the steps at the end of DATA.
func (s Steps) Data(ctx context.Context, t *Transaction, m *Message) error {
	for _, st := range s {
		if err := st.Data(ctx, t, m); err != nil {
			return err
		}
	}
	return nil
}
