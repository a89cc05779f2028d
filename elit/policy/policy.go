// Package policy holds Elit's decide steps (elit/decide) of today: where
// each recipient goes and whether we take it at all (Route: local
// addresses and lists from the user database, postmaster, SRS addresses,
// list bounce addresses, relaying for authenticated users only), what an
// authenticated user may send as (Sender), and mail loops (Hops).
package policy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/mail"
	"strings"

	"elit.local/elit/decide"
	"elit.local/elit/lists"
	"elit.local/elit/mailaddr"
	"elit.local/elit/metrics"
	"elit.local/elit/reply"
	"elit.local/elit/srs"
	"elit.local/elit/userdb"
)

var rcptRefusedTotal = metrics.Default.NewCounterVec("elit_recipients_refused_total", "RCPT commands refused, by reason.", "reason")

func discard(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}

// Route decides where each recipient goes (RFC 5321 §4.1.1.3): to the
// mailboxes of a local address (a list to each member), to the sender an
// SRS address of ours encodes, to nowhere for a bounce to a list member's
// bounce address (counted instead), and anywhere for an authenticated
// user. Anything else is refused: no open relay. On the MX, it also gives
// forwarded mail an SRS sender at our domain.
type Route struct {
	decide.Nop
	Users func() *userdb.DB // the database in use
	// Postmaster takes mail for postmaster@ a local domain that the
	// database does not have (RFC 5321 §4.5.1).
	Postmaster string
	// SRS, when set, rewrites the sender of mail the MX forwards and takes
	// mail to its addresses back.
	SRS *srs.SRS
	// ListSigner checks list members' bounce addresses and ListBounce
	// counts a bounce to one; without both such addresses are unknown.
	ListSigner *lists.Signer
	ListBounce func(list, member, reason string)
	Log        *slog.Logger
}

// Rcpt routes one recipient.
func (rt *Route) Rcpt(_ context.Context, t *decide.Transaction, r *decide.Rcpt) error {
	db := rt.Users()
	log := discard(rt.Log).With("client", t.Session.Client.String())
	to, a := r.Address, r.Addr
	if a.Domain == "" && strings.EqualFold(a.Local, "postmaster") {
		// RFC 5321 §4.1.1.3: <Postmaster> without a domain is ours.
		to = "postmaster@" + db.Domain()
		a = mailaddr.Address{Local: a.Local, Domain: db.Domain()}
	}
	if lists.IsBounceAddress(to) && db.IsLocalDomain(a.Domain) && rt.ListSigner != nil && rt.ListBounce != nil {
		// A bounce about a member of one of our lists: counted once the
		// transaction is accepted, not delivered; only with our signature,
		// and only for a member of the list.
		list, member, ok := rt.ListSigner.ParseBounceAddress(to)
		if u := db.Lookup(list); ok && u != nil && len(u.Mailboxes) > 1 && isMember(u, member) {
			t.Consume(r)
			t.NoMessage = "Bounce recorded"
			t.OnAccept(func() {
				log.Info("list bounce", "list", u.Address, "member", member, "from", t.From)
				rt.ListBounce(u.Address, member, fmt.Sprintf("bounce from <%s> (%s)", t.From, t.Session.Client))
			})
			return nil
		}
		log.Info("recipient refused: bad list bounce address", "to", to)
		rcptRefusedTotal.Inc("list-bounce")
		return reply.New(550, reply.Enhanced{5, 1, 1}, "<%s>: no such user here", to)
	}
	switch {
	case rt.SRS != nil && srs.IsSRS(a.Local) && sameDomain(a.Domain, rt.SRS.Domain):
		// A bounce (or reply) to an address we rewrote: send it on.
		orig, err := rt.SRS.Reverse(to)
		if err != nil {
			log.Info("recipient refused: SRS", "to", to, "err", err)
			rcptRefusedTotal.Inc("srs")
			return reply.New(550, reply.Enhanced{5, 1, 1}, "<%s>: invalid or expired SRS address", to)
		}
		t.Route(r, "", orig)
	case db.IsLocalDomain(a.Domain):
		targets, err := db.Expand(to)
		if errors.Is(err, userdb.ErrUnknown) && strings.EqualFold(a.Local, "postmaster") && rt.Postmaster != "" {
			// RFC 5321 §4.5.1: postmaster must always be accepted.
			targets, err = db.Expand(rt.Postmaster)
			if err != nil || len(targets) == 0 {
				targets, err = []string{rt.Postmaster}, nil
			}
		}
		switch {
		case errors.Is(err, userdb.ErrUnknown):
			log.Info("recipient refused: unknown", "to", to)
			rcptRefusedTotal.Inc("unknown")
			return reply.New(550, reply.Enhanced{5, 1, 1}, "<%s>: no such user here", to)
		case err != nil:
			log.Error("recipient refused: cannot expand", "to", to, "err", err)
			return reply.New(550, reply.Enhanced{5, 4, 6}, "<%s>: cannot be expanded (routing loop)", to)
		case len(targets) == 0:
			return reply.New(550, reply.Enhanced{5, 1, 1}, "<%s>: this address has no mailbox", to)
		}
		list := ""
		if u := db.Lookup(to); u != nil && len(u.Mailboxes) > 1 {
			list = u.Address
		}
		t.Route(r, list, targets...)
	case t.Session.User != "":
		t.Route(r, "", r.Address)
	default:
		log.Info("recipient refused: relay", "to", to, "from", t.From)
		rcptRefusedTotal.Inc("relay")
		return reply.New(554, reply.Enhanced{5, 7, 1}, "<%s>: relay access denied", to)
	}
	return nil
}

// Data gives mail the MX forwards a sender at our domain (SRS), so that
// SPF passes at the destination; the SRS package leaves our own
// addresses and the null sender alone.
func (rt *Route) Data(_ context.Context, t *decide.Transaction, _ *decide.Message) error {
	if rt.SRS == nil || t.Session.User != "" || t.From == "" || len(t.Recipients) == 0 {
		return nil
	}
	a, err := mailaddr.Parse(t.From)
	if err != nil || rt.Users().IsLocalDomain(a.Domain) {
		return nil
	}
	if rewritten, err := rt.SRS.Forward(t.From); err == nil && rewritten != t.From {
		t.From, t.OrigFrom = rewritten, t.From
	}
	return nil
}

// sameDomain reports whether two domains are one, in U-label or A-label
// form.
func sameDomain(a, b string) bool {
	ca, err1 := mailaddr.CanonicalDomain(a)
	cb, err2 := mailaddr.CanonicalDomain(b)
	return err1 == nil && err2 == nil && ca == cb
}

// isMember reports whether member is one of u's mailboxes.
func isMember(u *userdb.User, member string) bool {
	m, err := mailaddr.Parse(member)
	if err != nil {
		return false
	}
	for _, mb := range u.Mailboxes {
		if a, err := mailaddr.Parse(mb); err == nil && a.Canonical() == m.Canonical() {
			return true
		}
	}
	return false
}

// Sender binds an authenticated user to their own addresses: the
// envelope sender and every address of the header From field must be the
// user's or a list's the user is a member of. Mail without AUTH (the MX)
// is left alone.
type Sender struct {
	decide.Nop
	Users func() *userdb.DB
	Log   *slog.Logger
}

// Mail checks the envelope sender.
func (s *Sender) Mail(_ context.Context, t *decide.Transaction) error {
	if t.Session.User == "" {
		return nil
	}
	db := s.Users()
	if u := db.Login(t.Session.User); u == nil || !db.CanSendAs(u, t.From) {
		discard(s.Log).Warn("sender refused: not the user's address", "user", t.Session.User, "from", t.From)
		return reply.New(550, reply.Enhanced{5, 7, 1}, "Sender address <%s> is not yours", t.From)
	}
	return nil
}

// Data requires exactly one From field (RFC 5322 §3.6) whose addresses
// the user may all send as.
func (s *Sender) Data(_ context.Context, t *decide.Transaction, m *decide.Message) error {
	if t.Session.User == "" {
		return nil
	}
	from := m.Values("From")
	if len(from) != 1 {
		return reply.New(550, reply.Enhanced{5, 6, 0}, "Message must have exactly one From header field (RFC 5322 section 3.6), it has %d", len(from))
	}
	list, err := mail.ParseAddressList(strings.TrimSpace(from[0].Value))
	if from[0].Long || err != nil || len(list) == 0 {
		return reply.New(550, reply.Enhanced{5, 6, 0}, "Cannot parse the From header field")
	}
	db := s.Users()
	u := db.Login(t.Session.User)
	for _, a := range list {
		if u == nil || !db.CanSendAs(u, a.Address) {
			discard(s.Log).Warn("message refused: header From is not the user's", "user", t.Session.User, "header_from", a.Address)
			return reply.New(550, reply.Enhanced{5, 7, 1}, "From: %s is not yours", a.Address)
		}
	}
	return nil
}

// Hops refuses a message that has been through too many servers: a mail
// loop (RFC 5321 §6.3).
type Hops struct {
	decide.Nop
	Max int // Received fields allowed, counting ours
	Log *slog.Logger
}

// Data counts the Received fields.
func (h *Hops) Data(_ context.Context, _ *decide.Transaction, m *decide.Message) error {
	if n := len(m.Values("Received")); n+1 > h.Max {
		discard(h.Log).Warn("message refused: too many hops", "received", n)
		return reply.New(554, reply.Enhanced{5, 4, 6}, "Too many hops (%d Received fields): mail loop?", n)
	}
	return nil
}
