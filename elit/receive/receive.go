// Package receive is the SMTP side of Elit: the MX (port 25, mail for our
// addresses from anywhere, RFC 5321) and submission (ports 587 with
// STARTTLS and 465 with implicit TLS, our users sending, RFC 6409 and
// RFC 8314), in one server over emersion/go-smtp. It speaks the protocol
// and enforces its limits; what to accept and where it goes is for the
// decide steps (elit/decide), asked at MAIL, RCPT and the end of DATA. A
// message is answered 250 only once it is durably in the queue.
package receive

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"elit.local/elit/decide"
	"elit.local/elit/internal/failcount"
	"elit.local/elit/queue"
)

// Mode is what a listener serves.
type Mode int

const (
	MX          Mode = iota // port 25: mail for local addresses, no AUTH
	Submission              // port 587: AUTH required, after STARTTLS
	Submissions             // port 465: TLS from the first byte (RFC 8314 §3.3)
)

func (m Mode) String() string {
	return [...]string{"mx", "submission", "submissions"}[m]
}

// Authenticator is the SASL side of AUTH (RFC 4954): the mechanisms on
// offer, and the server side of one exchange. done is called with the
// user's login once the client is authenticated. A failure that the
// client caused by breaking the protocol may say so with a method
// IsMalformed() bool.
type Authenticator interface {
	Mechanisms() []string
	Start(mechanism string, tls *tls.ConnectionState, certDER []byte, done func(login string)) (sasl.Server, error)
}

// Config configures a Server. Zero limits take the defaults below.
type Config struct {
	Hostname string // in the greeting, EHLO and Received
	// Steps decide at MAIL, RCPT and the end of DATA (elit/decide): with
	// none, every recipient is refused.
	Steps decide.Steps
	// Auth offers AUTH on the submission listeners; nil offers none.
	Auth  Authenticator
	Queue *queue.Store
	// Deliver is told about each message queued; it must not block.
	Deliver func(*queue.Message)
	Log     *slog.Logger
	// TLS is the server's TLS configuration; nil disables STARTTLS and
	// Submissions. CertDER returns the leaf certificate in use, for the
	// tls-server-end-point channel binding.
	TLS     *tls.Config
	CertDER func() []byte
	// NoREQUIRETLS turns off the REQUIRETLS extension (RFC 8689), which
	// is otherwise offered inside TLS on every listener and taken only
	// there: a server that cannot pass the requirement on (a mailing
	// list to members elsewhere, say) may not want it.
	NoREQUIRETLS bool

	MaxSize         int64         // message size in bytes (10 MB, as Postfix)
	MaxRecipients   int           // RCPT commands per message (100)
	MaxLineLength   int           // bytes per line, commands and data (4096)
	ReadTimeout     time.Duration // per command or data read (5 min, as Postfix)
	WriteTimeout    time.Duration // per reply (5 min)
	MaxSessionTime  time.Duration // whole connection (1 h)
	MaxConns        int           // concurrent connections (500)
	MaxConnsPerIP   int           // concurrent connections from one address (50, as Postfix)
	MaxJunkCommands int           // RSET/EHLO without a message in between (100, as Postfix)
	// Error limits, as Postfix's: every 4xx/5xx reply (unknown user, bad
	// SRS address, relay refused, syntax error, failed login...) is an
	// error. Past SoftErrorLimit errors on a connection each error reply
	// waits ErrorSleep; at HardErrorLimit the connection is closed with
	// 421. A message accepted resets the connection's count. Errors are
	// also counted per client (an IPv4 address, an IPv6 /64) over
	// ClientErrorWindow: at MaxClientErrors the client's connection is
	// closed, and new ones refused with 421, until the window has moved on.
	SoftErrorLimit    int           // (10, as Postfix)
	HardErrorLimit    int           // (20, as Postfix)
	ErrorSleep        time.Duration // (1 s, as Postfix; negative: none)
	MaxClientErrors   int           // (100)
	ClientErrorWindow time.Duration // (1 h)
	MaxAuthFailures   int           // per connection, then 421 (3)
	MaxAuthFailIP     int           // per client address in AuthFailWindow, then 454 (10)
	AuthFailWindow    time.Duration // (15 min)
	AuthFailureDelay  time.Duration // before answering a failure, times the failures so far (1 s)

	Now func() time.Time
}

func (c *Config) setDefaults() {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	defDur := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	if c.MaxSize == 0 {
		c.MaxSize = 10_240_000
	}
	def(&c.MaxRecipients, 100)
	def(&c.MaxLineLength, 4096)
	def(&c.MaxConns, 500)
	def(&c.MaxConnsPerIP, 50)
	def(&c.MaxJunkCommands, 100)
	def(&c.SoftErrorLimit, 10)
	def(&c.HardErrorLimit, 20)
	def(&c.MaxClientErrors, 100)
	defDur(&c.ClientErrorWindow, time.Hour)
	if c.ErrorSleep == 0 {
		c.ErrorSleep = time.Second
	} else if c.ErrorSleep < 0 {
		c.ErrorSleep = 0
	}
	def(&c.MaxAuthFailures, 3)
	def(&c.MaxAuthFailIP, 10)
	defDur(&c.ReadTimeout, 5*time.Minute)
	defDur(&c.WriteTimeout, 5*time.Minute)
	defDur(&c.MaxSessionTime, time.Hour)
	defDur(&c.AuthFailWindow, 15*time.Minute)
	if c.AuthFailureDelay == 0 {
		c.AuthFailureDelay = time.Second
	} else if c.AuthFailureDelay < 0 {
		c.AuthFailureDelay = 0
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.Deliver == nil {
		c.Deliver = func(*queue.Message) {}
	}
	if c.CertDER == nil {
		c.CertDER = func() []byte { return nil }
	}
}

// Server accepts mail on any number of listeners.
type Server struct {
	cfg      Config
	conns    *connLimiter
	failures *failcount.Counter // failed logins per client
	errors   *failcount.Counter // error replies per client
	refused  *refusalLog
}

// New returns a server.
func New(cfg Config) (*Server, error) {
	cfg.setDefaults()
	if cfg.Hostname == "" || cfg.Queue == nil {
		return nil, errors.New("receive: Hostname and Queue are required")
	}
	return &Server{
		cfg:      cfg,
		conns:    newConnLimiter(cfg.MaxConns, cfg.MaxConnsPerIP),
		failures: failcount.New(cfg.AuthFailWindow, cfg.Now),
		errors:   failcount.New(cfg.ClientErrorWindow, cfg.Now),
		refused:  newRefusalLog(cfg.Log, time.Minute),
	}, nil
}

// Serve answers connections on l in mode until ctx is done. Connections
// still open then get a few seconds to finish; a message not yet answered
// 250 is simply not accepted, so nothing acknowledged is lost.
func (s *Server) Serve(ctx context.Context, l net.Listener, mode Mode) error {
	if mode != MX && s.cfg.TLS == nil {
		return fmt.Errorf("receive: %v needs TLS", mode)
	}
	srv := smtp.NewServer(&backend{s: s, mode: mode, ctx: ctx})
	srv.Domain = s.cfg.Hostname
	srv.MaxMessageBytes = s.cfg.MaxSize
	srv.MaxRecipients = s.cfg.MaxRecipients
	srv.MaxLineLength = s.cfg.MaxLineLength
	srv.ReadTimeout = s.cfg.ReadTimeout
	srv.WriteTimeout = s.cfg.WriteTimeout
	srv.EnableSMTPUTF8 = true
	srv.EnableDSN = true
	// Advertised only inside TLS, and refused outside it (RFC 8689
	// section 2; third_party/go-smtp).
	srv.EnableREQUIRETLS = !s.cfg.NoREQUIRETLS
	srv.TLSConfig = s.cfg.TLS
	srv.SoftErrorLimit = s.cfg.SoftErrorLimit
	srv.HardErrorLimit = s.cfg.HardErrorLimit
	srv.ErrorSleep = s.cfg.ErrorSleep
	srv.OnError = s.onError
	srv.ErrorLog = slogLogger{s.cfg.Log.With("listener", mode.String())}
	l = &limitListener{Listener: l, s: s, plain: mode != Submissions}
	if mode == Submissions {
		l = tls.NewListener(l, s.cfg.TLS)
	}
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-ctx.Done():
		case <-done:
			return
		}
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if srv.Shutdown(sctx) != nil {
			srv.Close()
		}
	}()
	s.cfg.Log.Info("listening", "mode", mode.String(), "addr", l.Addr().String())
	err := srv.Serve(l)
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// onError counts an error reply against the client, and says to close
// the connection once the client is over its budget.
func (s *Server) onError(c *smtp.Conn) bool {
	ip := remoteIP(c.Conn())
	n := s.errors.Add(clientKey(ip))
	switch {
	case n == s.cfg.MaxClientErrors:
		s.cfg.Log.Warn("closing: too many errors from this client", "client", ip, "errors", n, "window", s.cfg.ClientErrorWindow)
		return true
	case n > s.cfg.MaxClientErrors:
		return true
	case c.ErrorCount() == s.cfg.HardErrorLimit:
		s.cfg.Log.Warn("closing: too many errors on this connection", "client", ip, "errors", c.ErrorCount())
	}
	return false
}

type backend struct {
	s    *Server
	mode Mode
	ctx  context.Context // the steps' context: it ends at shutdown
}

func (b *backend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	ss := newSession(b.s, b.mode, c)
	ss.ctx = b.ctx
	return ss, nil
}

// slogLogger adapts go-smtp's error log (failed handshakes, broken
// connections: the client's problems, not ours) to slog at level info.
type slogLogger struct{ l *slog.Logger }

func (l slogLogger) Printf(format string, v ...any) {
	l.l.Info(fmt.Sprintf(format, v...))
}

func (l slogLogger) Println(v ...any) {
	l.l.Info(fmt.Sprint(v...))
}
