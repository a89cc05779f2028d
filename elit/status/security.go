package status

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"elit.local/elit/internal/failcount"
)

// The page's safety: every response forbids framing (RFC 7034) and
// anything not served by the page itself (Content Security Policy Level
// 3: no inline script or style); a state-changing request from a browser
// must come from the page (Fetch metadata and Origin, RFC 6454) and carry
// the page's CSRF token; failed logins are limited per client and in all,
// as SMTP AUTH's are (elit/receive).

// contentSecurityPolicy lets the page load only its own style sheet,
// script and images.
const contentSecurityPolicy = "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; " +
	"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// Login limits: after MaxLoginFailures failed logins from one client (its
// IPv4 address or IPv6 /64) in LoginFailWindow, or MaxLoginFailuresAll
// from anyone, the guard answers 429 without looking at the password.
const (
	MaxLoginFailures    = 10
	MaxLoginFailuresAll = 100
	LoginFailWindow     = 15 * time.Minute
)

// allClients is the failure counter's key for the failures of everyone.
var allClients = netip.Prefix{}

// securityHeaders sets the headers every answer of the page carries.
func securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", contentSecurityPolicy)
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("Cache-Control", "no-store")
		h.ServeHTTP(w, r)
	})
}

// setup makes the per-process secrets and counters once.
func (s *Server) setup() {
	s.once.Do(func() {
		s.csrfKey = make([]byte, 32)
		rand.Read(s.csrfKey)
		s.logins = failcount.New(LoginFailWindow, s.Now)
	})
}

// csrfToken is the token the page's forms carry for the authenticated
// user: an HMAC of the user under a key made at start, so that only who
// can read the page (same origin, logged in) knows it.
func (s *Server) csrfToken(user string) string {
	m := hmac.New(sha256.New, s.csrfKey)
	m.Write([]byte("elit status csrf\x00" + user))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// checkCSRF reports whether a POST of the page carries its token for
// the user.
func (s *Server) checkCSRF(r *http.Request) bool {
	user, _, _ := r.BasicAuth()
	got := r.PostFormValue("csrf")
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(s.csrfToken(user))) == 1
}

// guard lets through private-network clients with the right password,
// and limits failed logins.
func (s *Server) guard(h http.Handler) http.Handler {
	cross := http.NewCrossOriginProtection()
	cross.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.Log.Warn("status page: cross-origin request refused", "method", r.Method, "path", r.URL.Path,
			"origin", r.Header.Get("Origin"), "sec_fetch_site", r.Header.Get("Sec-Fetch-Site"), "client", r.RemoteAddr)
		http.Error(w, "cross-origin request refused", http.StatusForbidden)
	}))
	h = cross.Handler(h)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ap, err := netip.ParseAddrPort(r.RemoteAddr)
		ip := ap.Addr().Unmap()
		if err != nil || !(ip.IsPrivate() || ip.IsLoopback() || ip.IsLinkLocalUnicast()) {
			http.Error(w, "only from a private network", http.StatusForbidden)
			return
		}
		s.setup()
		key := failcount.Key(ip)
		if n, all := s.logins.Count(key), s.logins.Count(allClients); n >= MaxLoginFailures || all >= MaxLoginFailuresAll {
			s.Log.Warn("status page: login refused: too many failures", "client", ip, "failures", n, "failures_all", all)
			w.Header().Set("Retry-After", strconv.Itoa(int(LoginFailWindow.Seconds())))
			http.Error(w, "too many failed logins, try again later", http.StatusTooManyRequests)
			return
		}
		user, pw, ok := r.BasicAuth()
		if !ok || subtle.ConstantTimeCompare([]byte(user), []byte("gokrazy"))&
			subtle.ConstantTimeCompare([]byte(pw), []byte(s.Password)) != 1 {
			if ok { // a browser asks first without credentials: no failure
				n := s.logins.Add(key)
				s.logins.Add(allClients)
				s.Log.Warn("status page: login failed", "client", ip, "user", user, "failures", n)
			}
			w.Header().Set("WWW-Authenticate", `Basic realm="elit"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}
