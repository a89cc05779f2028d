package receive

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/emersion/go-smtp"

	"elit.local/elit/decide"
)

// Errors from scanning a message.
var (
	errBareNewline = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 5, 2},
		Message: "Message refused: bare CR or LF in the data (RFC 5321 section 2.3.8); lines must end with CRLF"}
	errHeaderTooLong = &smtp.SMTPError{Code: 552, EnhancedCode: smtp.EnhancedCode{5, 3, 4},
		Message: "Message refused: header section too large"}
)

// maxHeaderField bounds the header fields kept for the decide steps;
// longer ones are still passed through, marked Long. The header section
// is bounded in bytes and in fields.
const (
	maxHeaderField   = 16 << 10
	maxHeaderSection = 1 << 20
	maxHeaderFields  = 10000
)

// scanner looks at a message as it streams into the queue: it refuses
// bare CR and bare LF anywhere (the SMTP smuggling family of
// CVE-2023-51764: such a line could end the message at a later hop), and
// reads the header section (RFC 5322 §2.2) for the decide steps at the
// end of DATA.
type scanner struct {
	prev       byte // last byte seen
	inHeader   bool
	headerSize int
	lineStart  bool
	line       []byte // the current header line, up to maxHeaderField
	lineLong   bool
	field      []byte // the current field, unfolded, up to maxHeaderField
	fieldLong  bool

	fields []decide.Field // the header section, unfolded
	err    error
	// Offsets in the message of the line being read and of the field it
	// belongs to.
	lineAt, fieldAt int
}

func newScanner() *scanner { return &scanner{inHeader: true, lineStart: true} }

func (s *scanner) Write(p []byte) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	for i, c := range p {
		if !s.inHeader {
			n, err := s.body(p[i:])
			return i + n, err
		}
		if s.prev == '\r' && c != '\n' || c == '\n' && s.prev != '\r' {
			s.err = errBareNewline
			return i, s.err
		}
		s.prev = c
		s.headerSize++
		if s.headerSize > maxHeaderSection {
			s.err = errHeaderTooLong
			return i, s.err
		}
		if c != '\n' {
			if len(s.line) < maxHeaderField {
				s.line = append(s.line, c)
			} else {
				s.lineLong = true
			}
			continue
		}
		line := bytes.TrimSuffix(s.line, []byte("\r"))
		long := s.lineLong
		s.line, s.lineLong = s.line[:0], false
		lineAt := s.lineAt
		s.lineAt = s.headerSize
		switch {
		case len(line) == 0 && !long:
			s.endField(lineAt)
			s.inHeader = false
		case line[0] == ' ' || line[0] == '\t':
			if len(s.field)+len(line) < maxHeaderField && !long {
				s.field = append(s.field, line...)
			} else {
				s.fieldLong = true
			}
		default:
			s.endField(lineAt)
			s.field = append(s.field[:0], line...)
			s.fieldLong = long
			s.fieldAt = lineAt
		}
		if s.err != nil {
			return i, s.err
		}
	}
	return len(p), nil
}

// body checks p, in the body, for bare CR and bare LF as Write does in
// the header, but a line at a time with bytes.IndexByte instead of byte
// by byte (which was a sixth of the relay's CPU at 100 KiB): each LF
// must follow a CR, and the rest of a line holds no CR, but for one as
// the last byte of p, whose LF comes with the next Write.
func (s *scanner) body(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		if s.prev == '\r' && p[0] != '\n' {
			s.err = errBareNewline
			return n, s.err
		}
		line, rest := p, p[len(p):] // the line to its LF, or all of p
		content := p                // what must hold no CR
		if j := bytes.IndexByte(p, '\n'); j >= 0 {
			line, rest = p[:j+1], p[j+1:]
			switch {
			case j == 0 && s.prev == '\r': // the LF of a CR that ended the last Write
				content = nil
			case j > 0 && p[j-1] == '\r':
				content = p[:j-1]
			default:
				s.err = errBareNewline
				return n + j, s.err
			}
		} else if p[len(p)-1] == '\r' {
			content = p[:len(p)-1]
		}
		if k := bytes.IndexByte(content, '\r'); k >= 0 {
			s.err = errBareNewline
			return n + k + 1, s.err
		}
		s.prev = line[len(line)-1]
		n += len(line)
		p = rest
	}
	return n, nil
}

// endField ends the field being read at offset end.
func (s *scanner) endField(end int) {
	if len(s.field) == 0 {
		return
	}
	name, value, ok := bytes.Cut(s.field, []byte(":"))
	if ok {
		f := decide.Field{Name: string(bytes.TrimRight(name, " \t")), Long: s.fieldLong,
			Start: int64(s.fieldAt), End: int64(end)}
		if !f.Long {
			f.Value = string(value)
		}
		if len(s.fields) == maxHeaderFields {
			s.err = errHeaderTooLong
		}
		s.fields = append(s.fields, f)
	}
	s.field, s.fieldLong = s.field[:0], false
}

// close ends the scan at the end of the data.
func (s *scanner) close() error {
	if s.err != nil {
		return s.err
	}
	if s.prev == '\r' {
		// A CR as the very last byte: go-smtp's reader keeps the CRLF
		// before the final dot, so only a bare CR can end the data so.
		return errBareNewline
	}
	if s.inHeader {
		s.endField(s.headerSize) // a message of headers only
	}
	return s.err
}

// trace is what our Received field says of a message.
type trace struct {
	helo string     // the client's HELO/EHLO name
	ip   netip.Addr // the client's address
	// rdns is the client's name confirmed by reverse DNS ("" none),
	// rdnsSecure whether DNSSEC authenticated it.
	rdns       string
	rdnsSecure bool
	hostname   string // ours
	id         string // the queue ID
	tls        *tls.ConnectionState
	user       string // the authenticated user
	utf8       bool   // SMTPUTF8
	rcpt       string // the one recipient, "" for several
	// requireTLS: the message came with REQUIRETLS (RFC 8689), said in
	// the TLS comment.
	requireTLS bool
}

// receivedHeader is the trace field of RFC 5321 §4.4, with the protocol
// keywords of RFC 3848 and RFC 6531 §3.7.3, REQUIRETLS in the TLS
// comment when the MAIL command had it (RFC 8689), and the client's name
// as reverse DNS confirmed it, with its DNSSEC status.
func receivedHeader(tr trace, now time.Time) string {
	proto := "ESMTP"
	if tr.utf8 {
		proto = "UTF8SMTP"
	}
	if tr.tls != nil {
		proto += "S"
	}
	if tr.user != "" {
		proto += "A"
	}
	var b strings.Builder
	// TCP-info: the name reverse DNS confirmed, if any, then the address.
	rdns := ""
	if tr.rdns != "" {
		rdns = sanitizeHelo(tr.rdns) + " "
	}
	fmt.Fprintf(&b, "Received: from %s (%s[%s])\r\n\tby %s (Elit) with %s id %s", sanitizeHelo(tr.helo), rdns, addrLiteral(tr.ip), tr.hostname, proto, tr.id)
	if tr.rdns != "" && tr.rdnsSecure {
		b.WriteString("\r\n\t(reverse DNS authenticated by DNSSEC)")
	}
	if tr.tls != nil {
		fmt.Fprintf(&b, "\r\n\t(using %s with cipher %s", tlsVersion(tr.tls.Version), tls.CipherSuiteName(tr.tls.CipherSuite))
		if tr.requireTLS {
			b.WriteString("; REQUIRETLS")
		}
		b.WriteString(")")
	}
	if tr.user != "" {
		fmt.Fprintf(&b, "\r\n\t(authenticated user %s)", sanitizeHelo(tr.user))
	}
	if tr.rcpt != "" {
		fmt.Fprintf(&b, "\r\n\tfor <%s>", tr.rcpt)
	}
	fmt.Fprintf(&b, ";\r\n\t%s\r\n", now.Format(time.RFC1123Z))
	return b.String()
}

// tlsRequiredNo reports whether the header says "TLS-Required: No" (RFC
// 8689 §3): the one value defined, in any case. Several fields must all
// say it; a field too long to keep, or any other value, makes the
// header no request at all (the sender's usual TLS handling applies).
func tlsRequiredNo(header []decide.Field) bool {
	n := 0
	for _, f := range header {
		if !strings.EqualFold(f.Name, "TLS-Required") {
			continue
		}
		if f.Long || !strings.EqualFold(strings.TrimSpace(f.Value), "No") {
			return false
		}
		n++
	}
	return n > 0
}

func addrLiteral(ip netip.Addr) string {
	if ip.Is6() {
		return "IPv6:" + ip.String()
	}
	return ip.String()
}

func tlsVersion(v uint16) string {
	switch v {
	case tls.VersionTLS13:
		return "TLS1.3"
	case tls.VersionTLS12:
		return "TLS1.2"
	case tls.VersionTLS11:
		return "TLS1.1"
	case tls.VersionTLS10:
		return "TLS1.0"
	}
	return fmt.Sprintf("TLS-0x%04x", v)
}

// sanitizeHelo keeps a client-supplied name from breaking the header: only
// printable ASCII without parentheses or backslashes, at most 255 bytes.
func sanitizeHelo(s string) string {
	var b strings.Builder
	for _, r := range s {
		if b.Len() >= 255 {
			break
		}
		if r > ' ' && r < 0x7f && r != '(' && r != ')' && r != '\\' {
			b.WriteRune(r)
		} else {
			b.WriteByte('?')
		}
	}
	if b.Len() == 0 {
		return "unknown"
	}
	return b.String()
}
