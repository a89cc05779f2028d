package deliver

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"elit.local/elit/queue"
	"elit.local/elit/reply"
)

// Users is what DSNs need of the user database in use (*userdb.DB has
// it): the domain they come from, and where a DSN to a local sender goes.
type Users interface {
	Domain() string                          // ours: DSNs come from MAILER-DAEMON at it
	IsLocalDomain(domain string) bool        // in U-label or A-label form
	Expand(address string) ([]string, error) // a local address's mailboxes
}

// bounce tells the sender of m about its failed recipients not yet
// reported, with one DSN (RFC 3464), and marks them reported. Nobody is
// told when the sender is null (never bounce a bounce, RFC 5321 §6.1) or
// a recipient asked NOTIFY=NEVER or NOTIFY without FAILURE (RFC 3461 §4.1).
func (d *Deliverer) bounce(m *queue.Message) error {
	sender := returnPath(m)
	var report []int
	for i, r := range m.Recipients {
		if r.Status != queue.Failed || r.Bounced {
			continue
		}
		if r.List != "" && d.cfg.ListBounce != nil {
			d.cfg.ListBounce(r.List, r.Address, r.LastError) // the list takes its members' bounces
			continue
		}
		if sender != "" && (r.Notify == "" || strings.Contains(strings.ToUpper(r.Notify), "FAILURE")) {
			report = append(report, i)
		}
	}
	if len(report) > 0 {
		data, err := d.dsn(m, sender, report, "failed")
		if err != nil {
			return err
		}
		if err := d.queueDSN(m, sender, data, "bounce queued", len(report)); err != nil {
			return err
		}
	}
	changed := false
	for i := range m.Recipients {
		if r := &m.Recipients[i]; r.Status == queue.Failed && !r.Bounced {
			r.Bounced, changed = true, true
		}
	}
	if changed {
		// Lazily: the notice is queued durably first, so a crash loses
		// at most this mark, and the notice goes twice.
		return d.cfg.Queue.UpdateLazily(m)
	}
	return nil
}

// warnDelayed sends one delay notice (RFC 3464 "delayed") for the
// recipients still pending DelayWarning after the message arrived, when
// their NOTIFY allows it (absent, or with DELAY: RFC 3461 §4.1).
func (d *Deliverer) warnDelayed(m *queue.Message, now time.Time) error {
	if d.cfg.DelayWarning <= 0 || now.Sub(m.Received) < d.cfg.DelayWarning {
		return nil
	}
	sender := returnPath(m)
	var report []int
	changed := false
	for i, r := range m.Recipients {
		if r.Status != queue.Pending || r.Attempts == 0 || r.DelayWarned {
			continue
		}
		if r.List != "" && d.cfg.ListBounce != nil {
			continue // the list, not the sender, deals with its members
		}
		if sender != "" && (r.Notify == "" || strings.Contains(strings.ToUpper(r.Notify), "DELAY")) {
			report = append(report, i)
		}
		m.Recipients[i].DelayWarned, changed = true, true
	}
	if !changed {
		return nil
	}
	if len(report) > 0 {
		data, err := d.dsn(m, sender, report, "delayed")
		if err != nil {
			return err
		}
		if err := d.queueDSN(m, sender, data, "delay notice queued", len(report)); err != nil {
			return err
		}
	}
	return d.cfg.Queue.UpdateLazily(m) // as in bounce
}

// queueDSN queues a notification to sender (expanded when local).
func (d *Deliverer) queueDSN(m *queue.Message, sender string, data []byte, what string, n int) error {
	rcpts := []queue.Recipient{{Address: sender}}
	if db := d.users(); db != nil && db.IsLocalDomain(domainOf(sender)) {
		if exp, err := db.Expand(sender); err == nil {
			rcpts = nil
			for _, a := range exp {
				rcpts = append(rcpts, queue.Recipient{Address: a, Original: sender})
			}
		}
	}
	// A REQUIRETLS message's notices are REQUIRETLS too (RFC 8689 §5).
	b := &queue.Message{From: "", Recipients: rcpts, Body: "8BITMIME", RequireTLS: m.RequireTLS}
	if d.cfg.Sign != nil {
		h, err := d.cfg.Sign(data)
		if err != nil {
			// Unsigned, the notice still goes: it is more use than none.
			d.cfg.Log.Error("cannot sign a notice", "id", m.ID, "err", err)
		}
		b.Header = h
	}
	if err := d.cfg.Queue.Put(b, bytes.NewReader(data)); err != nil {
		return fmt.Errorf("queueing a DSN: %w", err)
	}
	bouncesTotal.Inc()
	d.cfg.Log.Info(what, "id", m.ID, "dsn", b.ID, "to", sender, "recipients", n)
	d.Notify(b)
	return nil
}

// notifyRelayed sends the "relayed" DSN (RFC 3461 §6.2.2) for recipients
// that asked NOTIFY=SUCCESS and went to a server without DSN.
func (d *Deliverer) notifyRelayed(m *queue.Message, relayed []int) error {
	sender := returnPath(m)
	if len(relayed) == 0 || sender == "" {
		return nil
	}
	data, err := d.dsn(m, sender, relayed, "relayed")
	if err != nil {
		return err
	}
	return d.queueDSN(m, sender, data, "relayed notice queued", len(relayed))
}

// returnPath is where notifications about m go: the original sender, not
// the SRS address the message went out with.
func returnPath(m *queue.Message) string {
	if m.OrigFrom != "" {
		return m.OrigFrom
	}
	return m.From
}

// CurrentUsers makes Config.Users of a function that returns the user
// database in use, or a nil pointer when there is none (which must not go
// into the interface as a non-nil Users).
func CurrentUsers[U interface {
	comparable
	Users
}](current func() U) func() Users {
	return func() Users {
		var none U
		if u := current(); u != none {
			return u
		}
		return nil
	}
}

// users returns the user database in use, or nil.
func (d *Deliverer) users() Users {
	if d.cfg.Users == nil {
		return nil
	}
	return d.cfg.Users()
}

// dsn writes the delivery status notification: multipart/report with a
// human-readable part, the message/delivery-status part and the original
// header (RFC 3464, RFC 6522).
func (d *Deliverer) dsn(m *queue.Message, sender string, report []int, action string) ([]byte, error) {
	delayed := action == "delayed"
	domain := d.cfg.Hostname
	if db := d.users(); db != nil {
		domain = db.Domain()
	}
	now := d.cfg.Now()
	rnd := make([]byte, 12)
	rand.Read(rnd)
	boundary := "elit-dsn-" + hex.EncodeToString(rnd)
	var b bytes.Buffer
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\r\n", args...) }
	w("From: Mail Delivery System <MAILER-DAEMON@%s>", domain)
	w("To: <%s>", sender)
	switch action {
	case "delayed":
		w("Subject: Delayed Mail (still being retried)")
	case "relayed":
		w("Subject: Successful Mail Delivery Report")
	default:
		w("Subject: Undelivered Mail Returned to Sender")
	}
	w("Date: %s", now.Format(time.RFC1123Z))
	w("Message-ID: <%s.%s@%s>", m.ID, hex.EncodeToString(rnd[:6]), d.cfg.Hostname)
	w("Auto-Submitted: auto-replied")
	w("MIME-Version: 1.0")
	w("Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"%s\"", boundary)
	w("")
	w("This is a delivery status notification (RFC 3464).")
	w("")
	w("--%s", boundary)
	w("Content-Type: text/plain; charset=utf-8")
	w("")
	w("This is the mail system at %s.", d.cfg.Hostname)
	w("")
	if action == "relayed" {
		w("Your message (queued as %s on %s) was passed on to the following", m.ID, m.Received.UTC().Format(time.RFC1123Z))
		w("recipients' mail servers, which do not report delivery status (RFC 3461):")
	} else if delayed {
		w("Your message (queued as %s on %s) has not been delivered yet to", m.ID, m.Received.UTC().Format(time.RFC1123Z))
		w("the following recipients. Delivery will be retried until %s;", m.Received.Add(d.cfg.Lifetime).UTC().Format(time.RFC1123Z))
		w("you do not need to send it again.")
	} else {
		w("Your message (queued as %s on %s) could not be delivered to", m.ID, m.Received.UTC().Format(time.RFC1123Z))
		w("the following recipients:")
	}
	w("")
	for _, i := range report {
		r := m.Recipients[i]
		w("  <%s>: %s", r.Address, oneLine(r.LastError))
	}
	w("")
	w("--%s", boundary)
	w("Content-Type: message/delivery-status")
	w("")
	w("Reporting-MTA: dns; %s", d.cfg.Hostname)
	if m.EnvID != "" {
		w("Original-Envelope-Id: %s", oneLine(m.EnvID))
	}
	w("Arrival-Date: %s", m.Received.Format(time.RFC1123Z))
	for _, i := range report {
		r := m.Recipients[i]
		w("")
		t, a, ok := strings.Cut(r.ORcpt, ";")
		if ok && strings.EqualFold(t, "utf-8") {
			// RFC 6533 §3: in message/delivery-status, the 7-bit form.
			a, ok = utf8AddrText(a, false)
		}
		if ok && isAtom(t) && a != "" {
			w("Original-Recipient: %s;%s", strings.ToLower(t), oneLine(a))
		} else if r.Original != "" {
			w("Original-Recipient: rfc822;%s", r.Original)
		}
		w("Final-Recipient: rfc822;%s", r.Address)
		class := map[string]int{"failed": 5, "delayed": 4, "relayed": 2}[action]
		w("Action: %s", action)
		w("Status: %s", dsnStatus(r.Result, class))
		switch res := r.Result; {
		case action == "relayed": // nothing to diagnose
		case fromServer(res) && res.RemoteMTA != "":
			// RFC 3464 §2.3.5 and §2.3.6, the smtp diagnostic-type: the
			// server's reply as it gave it.
			w("Remote-MTA: dns; %s", res.RemoteMTA)
			w("Diagnostic-Code: smtp; %s", oneLine(replyText(res)))
		default:
			w("Diagnostic-Code: x-elit; %s", oneLine(r.LastError))
		}
		w("Last-Attempt-Date: %s", now.Format(time.RFC1123Z))
		if delayed {
			w("Will-Retry-Until: %s", m.Received.Add(d.cfg.Lifetime).Format(time.RFC1123Z))
		}
	}
	w("")
	w("--%s", boundary)
	// RET=FULL asks for the whole message back (RFC 3461 §4.3), which we
	// do for failures up to maxReturned; otherwise the header section.
	// REQUIRETLS disregards RET=FULL (RFC 8689 §5).
	if strings.EqualFold(m.Ret, "FULL") && action == "failed" && m.Size <= maxReturned && !m.RequireTLS {
		w("Content-Type: message/rfc822")
		w("")
		if err := d.writeMessage(&b, m.ID); err != nil {
			return nil, err
		}
	} else {
		w("Content-Type: text/rfc822-headers")
		w("")
		if err := d.writeHeader(&b, m.ID); err != nil {
			return nil, err
		}
	}
	w("")
	w("--%s--", boundary)
	return b.Bytes(), nil
}

// maxReturned is the largest message a DSN carries whole.
const maxReturned = 1 << 20

// writeMessage copies the queued message, ending with a line break.
func (d *Deliverer) writeMessage(b *bytes.Buffer, id string) error {
	f, err := d.cfg.Queue.Data(id)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := b.ReadFrom(f); err != nil {
		return err
	}
	if !bytes.HasSuffix(b.Bytes(), []byte("\r\n")) {
		b.WriteString("\r\n")
	}
	return nil
}

// writeHeader copies the header section of the queued message.
func (d *Deliverer) writeHeader(b *bytes.Buffer, id string) error {
	f, err := d.cfg.Queue.Data(id)
	if err != nil {
		return err
	}
	defer f.Close()
	r := bufio.NewReader(f)
	for n := 0; n < 1<<20; {
		line, err := r.ReadString('\n')
		if line == "\r\n" || line == "\n" || line == "" {
			return nil
		}
		if !strings.HasSuffix(line, "\n") {
			line += "\r\n"
		}
		b.WriteString(line)
		n += len(line)
		if err != nil {
			return nil
		}
	}
	return nil
}

// dsnStatus is a recipient's Status (RFC 3464 §2.3.4): the enhanced code
// of its result when it has one of class, else class.0.0 (a reply without
// an enhanced code, or an envelope from before results were kept).
func dsnStatus(res queue.Result, class int) string {
	if e, ok := reply.ParseEnhanced(res.Enhanced); ok && e[0] == class {
		return e.String()
	}
	return fmt.Sprintf("%d.0.0", class)
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
