package queue

import (
	"fmt"
	"time"
)

// Operator actions on a message's recipients (elit queue). They are the
// same whether the server carries them out or a tool edits the files of a
// stopped server; the caller stores the message. Each returns how many
// recipients it changed.

// Hold stops the delivery of the pending recipients.
func (m *Message) Hold() int {
	return m.each(Pending, func(r *Recipient) { r.Status = Held })
}

// Release makes the held recipients pending again, due now.
func (m *Message) Release() int {
	return m.each(Held, func(r *Recipient) { r.Status, r.NextAttempt = Pending, time.Time{} })
}

// Retry makes the pending recipients due now.
func (m *Message) Retry() int {
	return m.each(Pending, func(r *Recipient) { r.NextAttempt = time.Time{} })
}

// DroppedPrefix starts the last error of a recipient the operator dropped.
const DroppedPrefix = "5.3.0 dropped from the queue by the operator; last error: "

// Drop gives up on the pending and held recipients: they fail, and the
// sender is to be told at once unless tell is false or the sender is null
// (no report to the null sender, RFC 3461 §6.2).
func (m *Message) Drop(tell bool) int {
	quiet := !tell || m.From == ""
	n := 0
	for _, from := range []Status{Pending, Held} {
		n += m.each(from, func(r *Recipient) {
			r.Status = Failed
			r.LastError = DroppedPrefix + r.LastError
			r.Result = Result{Enhanced: "5.3.0", Text: "dropped from the queue by the operator", Permanent: true}
			r.NextAttempt = time.Time{}
			r.Bounced = quiet
		})
	}
	return n
}

// SetRequireTLS sets or clears the message's REQUIRETLS tag (RFC 8689):
// an operator may let a message go without it, or ask for it. It returns
// the recipients still to deliver (pending or held) when the tag changed,
// else 0.
func (m *Message) SetRequireTLS(on bool) int {
	if m.RequireTLS == on {
		return 0
	}
	m.RequireTLS = on
	return m.undelivered()
}

// SetTLSRequired sets what the message's "TLS-Required" header field
// means for delivery (RFC 8689 §3): required false is "TLS-Required: No",
// the recipient domain's TLS policy failures ignored; true is the usual
// handling. The header itself is not changed. It returns the recipients
// still to deliver when the setting changed, else 0.
func (m *Message) SetTLSRequired(required bool) int {
	if m.TLSRequiredNo == !required {
		return 0
	}
	m.TLSRequiredNo = !required
	return m.undelivered()
}

// undelivered counts the pending and held recipients.
func (m *Message) undelivered() int {
	n := 0
	for _, r := range m.Recipients {
		if r.Status == Pending || r.Status == Held {
			n++
		}
	}
	return n
}

// Apply runs an operator command: "hold", "release", "retry", "drop",
// "drop-quietly" (drop without telling the sender), "requiretls-on" and
// "requiretls-off" (SetRequireTLS), "tlsrequired-no" and
// "tlsrequired-yes" (SetTLSRequired).
func (m *Message) Apply(cmd string) (int, error) {
	switch cmd {
	case "requiretls-on", "requiretls-off":
		return m.SetRequireTLS(cmd == "requiretls-on"), nil
	case "tlsrequired-no", "tlsrequired-yes":
		return m.SetTLSRequired(cmd == "tlsrequired-yes"), nil
	case "hold":
		return m.Hold(), nil
	case "release":
		return m.Release(), nil
	case "retry":
		return m.Retry(), nil
	case "drop":
		return m.Drop(true), nil
	case "drop-quietly":
		return m.Drop(false), nil
	}
	return 0, fmt.Errorf("unknown command %q", cmd)
}

func (m *Message) each(from Status, fn func(r *Recipient)) int {
	n := 0
	for i := range m.Recipients {
		if m.Recipients[i].Status == from {
			fn(&m.Recipients[i])
			n++
		}
	}
	return n
}
