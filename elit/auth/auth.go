// Package auth implements the server side of the SASL mechanisms Elit
// offers for SMTP submission (RFC 4954): PLAIN (RFC 4616), LOGIN
// (draft-murchison-sasl-login), CRAM-MD5 (RFC 2195), SCRAM-SHA-1 and
// SCRAM-SHA-256 (RFC 5802, RFC 7677) and SCRAM-SHA-256-PLUS with channel
// binding (tls-exporter, RFC 9266; tls-server-end-point, RFC 5929;
// tls-unique for TLS 1.2, RFC 5929).
//
// Each mechanism is a sasl.Server checking credentials against a
// userdb.DB. Failures are *Error values: the caller counts them, delays
// and answers.
package auth

import (
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-sasl"

	"elit.local/elit/userdb"
)

// Error is a failed authentication. Login is the name the client gave,
// when it got that far.
type Error struct {
	Login     string
	Malformed bool // the client broke the protocol, rather than gave wrong credentials
	Reason    string
}

func (e *Error) Error() string {
	if e.Login != "" {
		return fmt.Sprintf("authentication failed for %q: %s", e.Login, e.Reason)
	}
	return "authentication failed: " + e.Reason
}

// IsMalformed reports whether the client broke the protocol.
func (e *Error) IsMalformed() bool { return e.Malformed }

func malformed(format string, args ...any) *Error {
	return &Error{Malformed: true, Reason: fmt.Sprintf(format, args...)}
}

// Config is what the mechanisms need beyond the database.
type Config struct {
	// Hostname goes into CRAM-MD5 challenges.
	Hostname string
	// TLS is the state of the connection; channel binding needs it.
	TLS *tls.ConnectionState
	// CertDER is the server's leaf certificate, for tls-server-end-point.
	CertDER []byte
	// PlusAdvertised tells SCRAM that SCRAM-SHA-256-PLUS was offered, so a
	// client saying "y" (it could bind but thinks we cannot) is under a
	// downgrade attack (RFC 5802 §6).
	PlusAdvertised bool
	// Nonce returns a fresh nonce; nil means 18 random bytes, hex.
	Nonce func() string
}

func (c *Config) nonce() string {
	if c.Nonce != nil {
		return c.Nonce()
	}
	b := make([]byte, 18)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// Server offers the mechanisms of the user database in use to an SMTP
// server (it is a receive.Authenticator): those some stored secret
// supports.
type Server struct {
	Users    func() *userdb.DB // the database in use
	Hostname string            // for CRAM-MD5 challenges
}

// Mechanisms lists the mechanisms on offer.
func (s *Server) Mechanisms() []string { return s.Users().Mechanisms() }

// Start begins an exchange of mechanism on a connection in state tls
// whose server certificate is certDER; done gets the login of the user
// once authenticated.
func (s *Server) Start(mechanism string, tls *tls.ConnectionState, certDER []byte, done func(login string)) (sasl.Server, error) {
	db := s.Users()
	cfg := &Config{Hostname: s.Hostname, TLS: tls, CertDER: certDER,
		PlusAdvertised: slices.Contains(db.Mechanisms(), "SCRAM-SHA-256-PLUS")}
	return New(mechanism, db, cfg, func(u *userdb.User) { done(u.Name) })
}

// ErrUnknownMechanism is returned by New for a mechanism it does not know.
var ErrUnknownMechanism = errors.New("unknown SASL mechanism")

// New returns the server side of mechanism. done is called with the user
// once the client is authenticated.
func New(mechanism string, db *userdb.DB, cfg *Config, done func(*userdb.User)) (sasl.Server, error) {
	switch strings.ToUpper(mechanism) {
	case "PLAIN":
		return &plain{db: db, done: done}, nil
	case "LOGIN":
		return &login{db: db, done: done}, nil
	case "CRAM-MD5":
		return &cramMD5{db: db, cfg: cfg, done: done}, nil
	case "SCRAM-SHA-1", "SCRAM-SHA-256", "SCRAM-SHA-256-PLUS":
		return newScram(strings.ToUpper(mechanism), db, cfg, done), nil
	}
	return nil, fmt.Errorf("%w %q", ErrUnknownMechanism, mechanism)
}

// plain is RFC 4616: one message, authzid NUL authcid NUL passwd. Without
// an initial response the server sends an empty challenge (RFC 4954 §4).
type plain struct {
	db      *userdb.DB
	done    func(*userdb.User)
	started bool
}

func (p *plain) Next(response []byte) ([]byte, bool, error) {
	if response == nil && !p.started {
		p.started = true
		return []byte{}, false, nil
	}
	parts := strings.Split(string(response), "\x00")
	if len(parts) != 3 {
		return nil, false, malformed("PLAIN: want authzid NUL authcid NUL passwd")
	}
	authz, authc, pw := parts[0], parts[1], parts[2]
	u, ok := p.db.Authenticate(authc, pw)
	if !ok {
		return nil, false, &Error{Login: authc, Reason: "wrong login or password"}
	}
	if authz != "" && authz != authc && p.db.Login(authz) != u {
		return nil, false, &Error{Login: authc, Reason: fmt.Sprintf("may not act as %q", authz)}
	}
	p.done(u)
	return nil, true, nil
}

// login is the LOGIN mechanism: the user name, then the password, each
// asked for (an initial response is the user name).
type login struct {
	db    *userdb.DB
	done  func(*userdb.User)
	step  int
	login string
}

func (l *login) Next(response []byte) ([]byte, bool, error) {
	switch l.step {
	case 0:
		l.step = 1
		if response == nil {
			return []byte("Username:"), false, nil
		}
		fallthrough
	case 1:
		l.login = string(response)
		l.step = 2
		return []byte("Password:"), false, nil
	default:
		u, ok := l.db.Authenticate(l.login, string(response))
		if !ok {
			return nil, false, &Error{Login: l.login, Reason: "wrong login or password"}
		}
		l.done(u)
		return nil, true, nil
	}
}

// cramMD5 is RFC 2195: a challenge in msg-id form, answered with the user
// name and the hex HMAC-MD5 of the challenge keyed with the password.
type cramMD5 struct {
	db        *userdb.DB
	cfg       *Config
	done      func(*userdb.User)
	challenge []byte
}

func (c *cramMD5) Next(response []byte) ([]byte, bool, error) {
	if c.challenge == nil {
		if len(response) > 0 {
			return nil, false, malformed("CRAM-MD5 takes no initial response")
		}
		c.challenge = fmt.Appendf(nil, "<%s.%s@%s>", c.cfg.nonce()[:16], strconv.FormatInt(time.Now().Unix(), 10), c.cfg.Hostname)
		return c.challenge, false, nil
	}
	name, digest, ok := strings.Cut(string(response), " ")
	if !ok {
		return nil, false, malformed("CRAM-MD5: want user SP digest")
	}
	u := c.db.Login(name)
	if u == nil || !u.CheckCRAMMD5(c.challenge, []byte(digest)) {
		return nil, false, &Error{Login: name, Reason: "wrong login or password"}
	}
	c.done(u)
	return nil, true, nil
}
