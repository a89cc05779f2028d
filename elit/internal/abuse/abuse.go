// Package abuse is the table of what an attacker (or a broken client)
// sends to the MX, one connection a case, with the replies it must get:
// receive's TestAbuse runs it against a server in-process, and cmd/elit's
// soak test against the running binary while it is under load.
package abuse

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"strconv"
	"strings"
	"time"

	"elit.local/elit/lists"
	"elit.local/elit/srs"
)

// Case is one connection: what is sent after the greeting (pipelined),
// the replies it must get, and what must follow.
type Case struct {
	Name string
	Send string   // after the greeting
	Want []string // reply prefixes, in order
	Then string   // sent after those replies
	// Closed: the server closes the connection after all that, with
	// nothing more said in SMTP (a TLS alert may come).
	Closed bool
	// Queued and Bounces are the messages queued and the list bounces
	// recorded (none, but for a check that something legitimate still
	// works).
	Queued, Bounces int
}

// Server is what the cases need to know of the server under test.
type Server struct {
	// Key is the server's secret (STATE/srs.key): it signs SRS and list
	// bounce addresses.
	Key []byte
	// Domain is the server's domain; User a local user at it, with one
	// mailbox; List a list at it and Member one of the list's mailboxes.
	Domain, User, List, Member string
}

// Cases returns the table for s. Every reply must be printable ASCII:
// none of these sessions uses SMTPUTF8.
func Cases(s Server) []Case {
	forward := &srs.SRS{Key: s.Key, Domain: s.Domain}
	signer := lists.NewSigner(s.Key)
	srsOK, _ := forward.Forward("boss@victim.test")
	srsHash := strings.Split(srsOK, "=")[1]
	badSRS := strings.Replace(srsOK, srsHash, "AAAAAAAAAAAAA", 1)
	bounceOK := signer.BounceAddress(s.List, s.Member)
	listLocal, _, _ := strings.Cut(s.List, "@")
	memberLocal, memberDomain, _ := strings.Cut(s.Member, "@")
	const (
		ehlo = "EHLO attacker.example\r\n"
		mail = "MAIL FROM:<x@attacker.example>\r\n"
		body = "DATA\r\nSubject: x\r\n\r\nx\r\n.\r\n"
	)
	rcpt := func(to string) string { return "RCPT TO:<" + to + ">\r\n" }
	data := func(msg string) string { return ehlo + mail + rcpt(s.User) + "DATA\r\n" + msg + ".\r\n" }
	ok := []string{"250", "250", "250", "354", "250 2.0.0 Queued"}
	return []Case{
		// Capabilities: guessed, forged or old addresses we hand out.
		{"srs guessed hash", ehlo + mail + rcpt(badSRS), []string{"250", "250", "550 5.1.1"}, "", false, 0, 0},
		{"srs old 4-character hash", ehlo + mail + rcpt(OldSRS(s.Key, s.Domain, "boss@victim.test", time.Now())), []string{"250", "250", "550 5.1.1"}, "", false, 0, 0},
		{"srs short hash", ehlo + mail + rcpt(strings.Replace(srsOK, srsHash, srsHash[:4], 1)), []string{"250", "250", "550 5.1.1"}, "", false, 0, 0},
		{"srs valid", ehlo + mail + rcpt(srsOK) + body, ok, "", false, 1, 0},
		{"list bounce unsigned", ehlo + mail + rcpt(listLocal+"+bounces="+memberLocal+"="+memberDomain+"@"+s.Domain), []string{"250", "250", "550 5.1.1"}, "", false, 0, 0},
		{"list bounce bad signature", ehlo + mail + rcpt(strings.Replace(bounceOK, "="+memberLocal+"=", "=x"+memberLocal+"=", 1)), []string{"250", "250", "550 5.1.1"}, "", false, 0, 0},
		{"list bounce not a member", ehlo + mail + rcpt(signer.BounceAddress(s.List, "mallory@evil.example")), []string{"250", "250", "550 5.1.1"}, "", false, 0, 0},
		{"list bounce not a list", ehlo + mail + rcpt(signer.BounceAddress(s.User, "r@example.com")), []string{"250", "250", "550 5.1.1"}, "", false, 0, 0},
		{"list bounce valid", ehlo + mail + rcpt(bounceOK) + body, []string{"250", "250", "250", "354", "250 2.0.0 Bounce recorded"}, "", false, 0, 1},
		// Relay and unknown users.
		{"relay", ehlo + mail + rcpt("boss@victim.test"), []string{"250", "250", "554 5.7.1"}, "", false, 0, 0},
		{"relay by literal", ehlo + mail + rcpt("boss@[192.0.2.1]"), []string{"250", "250", "554 5.7.1"}, "", false, 0, 0},
		{"relay by source route", ehlo + mail + rcpt("@"+s.Domain+":boss@victim.test"), []string{"250", "250", "5"}, "", false, 0, 0},
		{"relay by percent hack", ehlo + mail + rcpt("boss%victim.test@"+s.Domain), []string{"250", "250", "550 5.1.1"}, "", false, 0, 0},
		{"unknown user", ehlo + mail + rcpt("nobody@"+s.Domain), []string{"250", "250", "550 5.1.1"}, "", false, 0, 0},
		// The DATA reader (go-smtp's, patched): SMTP smuggling.
		{"CR CR LF before the end", data("Subject: x\r\n\r\nx\r\r\n"), []string{"250", "250", "250", "354", "550 5.5.2"}, "", false, 0, 0},
		{"dot CR smuggling", data("Subject: x\r\n\r\nx\r\n.\rMAIL FROM:<a@b.example>\r\n"), []string{"250", "250", "250", "354", "550 5.5.2"}, "", false, 0, 0},
		{"LF dot LF smuggling", data("Subject: x\r\n\r\nx\n.\nMAIL FROM:<a@b.example>\r\n"), []string{"250", "250", "250", "354", "550 5.5.2"}, "", false, 0, 0},
		{"LF dot CR LF smuggling", data("Subject: x\r\n\r\nx\n.\r\nMAIL FROM:<a@b.example>\r\n"), []string{"250", "250", "250", "354", "550 5.5.2"}, "", false, 0, 0},
		{"CR LF dot LF smuggling", data("Subject: x\r\n\r\nx\r\n.\nMAIL FROM:<a@b.example>\r\n"), []string{"250", "250", "250", "354", "550 5.5.2"}, "", false, 0, 0},
		// Protocol details.
		{"NUL in EHLO", "EHLO a\x00b.example\r\n", []string{"501 5.5.2"}, "", false, 0, 0},
		{"control characters in HELO", "HELO a\x1b[2Jb\r\n", []string{"501 5.5.2"}, "", false, 0, 0},
		{"non-ASCII address without SMTPUTF8", ehlo + mail + rcpt("ü"+s.User), []string{"250", "250", "553 5.6.7"}, "", false, 0, 0},
		{"non-ASCII sender without SMTPUTF8", ehlo + "MAIL FROM:<ätt@attacker.example>\r\n", []string{"250", "553 5.6.7"}, "", false, 0, 0},
		{"Postmaster without a domain", ehlo + mail + rcpt("Postmaster") + body, ok, "", false, 1, 0},
		{"failed STARTTLS handshake", ehlo + "STARTTLS\r\n", []string{"250", "220"}, "\x16\x03\x01\x00\x05hello\r\nMAIL FROM:<x@y.example>\r\n", true, 0, 0},
		// 1 MB lines: the connection ends at the limit (-max-line-length),
		// and nothing of the line is run as a command.
		{"1 MB command line", ehlo + "MAIL FROM:<" + strings.Repeat("a", 1<<20) + "@attacker.example>\r\n", []string{"250", "500 5.4.0"}, "", true, 0, 0},
		{"1 MB line of data", data("Subject: x\r\n\r\n" + strings.Repeat("a", 1<<20) + "\r\n"), []string{"250", "250", "250", "354", "500 5.5.2", "500 5.4.0"}, "", true, 0, 0},
		// Malformed headers and MIME: a header section too large is
		// refused; the rest is passed on as it is, as Postfix does.
		{"header section over 1 MB", data("Subject: x\r\n" + strings.Repeat("X-Filler: "+strings.Repeat("a", 1000)+"\r\n", 1100) + "\r\nx\r\n"), []string{"250", "250", "250", "354", "552 5.3.4"}, "", false, 0, 0},
		{"over 10 000 header fields", data(strings.Repeat("X: y\r\n", 10001) + "\r\nx\r\n"), []string{"250", "250", "250", "354", "552 5.3.4"}, "", false, 0, 0},
		{"header field without a colon", data("Subject x\r\nFrom\r\n: empty name\r\n\r\nx\r\n"), ok, "", false, 1, 0},
		{"header field of 64 KiB", data("Subject: x" + strings.Repeat("\r\n "+strings.Repeat("a", 1000), 64) + "\r\n\r\nx\r\n"), ok, "", false, 1, 0},
		{"folded field without a field", data(" folded first\r\nSubject: x\r\n\r\nx\r\n"), ok, "", false, 1, 0},
		{"NUL and 8-bit in the header", data("Subject: a\x00b \xff\xfe\r\n\r\nx\r\n"), ok, "", false, 1, 0},
		{"MIME boundary never closed", data("MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nx\r\n--b\r\nContent-Type: multipart/alternative; boundary=\r\n\r\n"), ok, "", false, 1, 0},
		{"MIME parts nested 1000 deep", data("MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b0\"\r\n\r\n" + nested(1000)), ok, "", false, 1, 0},
		{"base64 body broken", data("MIME-Version: 1.0\r\nContent-Transfer-Encoding: base64\r\nContent-Type: text/plain; charset=\"\r\n\r\n!!!!====@@@@\r\n"), ok, "", false, 1, 0},
	}
}

// nested is n multipart parts, each inside the one before.
func nested(n int) string {
	var b strings.Builder
	for i := range n {
		b.WriteString("--b" + strconv.Itoa(i) + "\r\nContent-Type: multipart/mixed; boundary=\"b" + strconv.Itoa(i+1) + "\"\r\n\r\n")
	}
	return b.String()
}

// OldSRS makes the SRS address Elit made before its hash grew (4 base64
// characters of an HMAC-SHA1), which a brute force found in seconds.
func OldSRS(key []byte, domain, to string, now time.Time) string {
	local, toDomain, _ := strings.Cut(to, "@")
	d := now.Unix() / 86400 % 1024
	const b32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
	stamp := string([]byte{b32[d>>5], b32[d&31]})
	m := hmac.New(sha1.New, key)
	for _, p := range []string{stamp, toDomain, local} {
		m.Write([]byte(strings.ToLower(p)))
	}
	h := base64.StdEncoding.EncodeToString(m.Sum(nil))[:4]
	return "SRS0=" + h + "=" + stamp + "=" + toDomain + "=" + local + "@" + domain
}

// PrintableASCII reports whether a reply is printable ASCII (its line
// ends aside).
func PrintableASCII(s string) bool {
	for _, c := range []byte(s) {
		if (c < ' ' || c > '~') && c != '\r' && c != '\n' {
			return false
		}
	}
	return true
}
