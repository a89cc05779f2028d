// Package authres writes and reads the Authentication-Results header
// field (RFC 8601): the verdicts of the checks a message passed (spf,
// dkim, dmarc, arc, iprev), under the name of the service that made them
// (the authserv-id).
//
// [Header.Field] writes a whole field, folded (RFC 5322 §2.2.3, §3.2.2):
// one result per line, properties carried over when a line would pass 78
// characters. [Parse] reads a field's value (RFC 8601 §2.2 ABNF), as ARC
// needs to build ARC-Authentication-Results (RFC 8617 §4.1.1).
// [AuthServID] and [Ours] find the fields that claim our authserv-id: a
// message from outside carrying one is forged, and the field is removed
// (RFC 8601 §5).
package authres

import (
	"errors"
	"fmt"
	"strings"
)

// Header is an Authentication-Results field.
type Header struct {
	AuthServID string // who made the checks (§2.5), usually our host name
	Version    int    // of the field (§2.2), 0 when absent (1 is implied)
	Results    []Result
}

// Result is one resinfo (§2.2): a method, its result, a reason and
// properties. Without any, the field says "none" (§2.2 no-result).
type Result struct {
	Method        string // spf, dkim, dmarc, arc, iprev, auth, ...
	MethodVersion int    // method "/" version, 0 when absent
	Result        string // pass, fail, none, temperror, ... (§2.7)
	// Comment is a comment after the result, "(...)" without the
	// parentheses; a parsed field keeps the first one found there.
	Comment    string
	Reason     string // reason= (§2.2), "" when absent
	Properties []Property
}

// Property is ptype.property=value (§2.3): smtp.mailfrom, smtp.helo,
// header.d, header.i, header.b, header.from, policy.iprev, ...
type Property struct {
	Type  string // smtp, header, body, policy
	Name  string
	Value string
}

// Property types and names this server writes (RFC 8601 §2.7, RFC 7489
// §11.2 for header.from and policy.dmarc, RFC 6008 for header.b).
const (
	SMTP   = "smtp"
	Head   = "header"
	Policy = "policy"
)

// Prop is a shorthand for a Property.
func Prop(typ, name, value string) Property { return Property{typ, name, value} }

// Value returns the first value of property typ.name (in any case), ""
// without one.
func (r Result) Value(typ, name string) string {
	for _, p := range r.Properties {
		if strings.EqualFold(p.Type, typ) && strings.EqualFold(p.Name, name) {
			return p.Value
		}
	}
	return ""
}

// maxLine is the length past which a line is folded (RFC 5322 §2.1.1).
const maxLine = 78

// Field returns the whole field, "Authentication-Results: ..." folded
// with CRLF and ending with CRLF, as decide.Transaction.Fields wants it.
// Method, Result, property types and names must be keywords (letters,
// digits, hyphens); values are written as they are when the grammar
// allows, else as quoted strings.
func (h Header) Field() string {
	return fold("Authentication-Results:", h.items()) + "\r\n"
}

// AAR returns the whole ARC-Authentication-Results field of ARC set i
// carrying these results (RFC 8617 §4.1.1: "i=" instance ";" then the
// payload of Authentication-Results), folded as Field folds.
func (h Header) AAR(i int) string {
	items := append([]item{{text: fmt.Sprintf("i=%d;", i)}}, h.items()...)
	return fold("ARC-Authentication-Results:", items) + "\r\n"
}

// Value returns the field's value on one line, without the leading
// space: what follows "Authentication-Results: ".
func (h Header) Value() string {
	var b strings.Builder
	for i, it := range h.items() {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(it.text)
	}
	return b.String()
}

// item is a piece of the field that stays on one line; newline says to
// begin a line with it.
type item struct {
	text    string
	newline bool
}

func (h Header) items() []item {
	id := h.AuthServID
	if !isToken(id) {
		id = quote(id)
	}
	if h.Version > 0 {
		id += fmt.Sprintf(" %d", h.Version)
	}
	if len(h.Results) == 0 {
		return []item{{text: id + ";"}, {text: "none"}}
	}
	items := []item{{text: id}}
	for _, r := range h.Results {
		items[len(items)-1].text += ";"
		head := r.Method
		if r.MethodVersion > 0 {
			head += fmt.Sprintf("/%d", r.MethodVersion)
		}
		head += "=" + r.Result
		items = append(items, item{text: head, newline: true})
		if r.Comment != "" {
			items = append(items, item{text: "(" + escapeComment(r.Comment) + ")"})
		}
		if r.Reason != "" {
			items = append(items, item{text: "reason=" + quote(r.Reason)})
		}
		for _, p := range r.Properties {
			items = append(items, item{text: p.Type + "." + p.Name + "=" + pvalue(p.Value)})
		}
	}
	return items
}

// fold lays items out after name: each result on a line of its own,
// further items on the same line while it stays within maxLine.
func fold(name string, items []item) string {
	var b strings.Builder
	b.WriteString(name)
	line := len(name)
	for i, it := range items {
		switch {
		case i == 0:
			b.WriteByte(' ')
			line++
		case it.newline || line+1+len(it.text) > maxLine:
			b.WriteString("\r\n\t")
			line = 8 // a tab, counted as 8
		default:
			b.WriteByte(' ')
			line++
		}
		b.WriteString(it.text)
		line += len(it.text)
	}
	return b.String()
}

// isToken reports whether s is a MIME token (RFC 2045 §5.1), UTF-8
// allowed (RFC 8616 §3).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !tokenChar(s[i]) {
			return false
		}
	}
	return true
}

func tokenChar(c byte) bool {
	return c > 0x20 && c != 0x7f && !strings.ContainsRune(`()<>@,;:\"/[]?=`, rune(c))
}

// atext is a character of an atom (RFC 5322 §3.2.3), UTF-8 allowed (RFC
// 6532 §3.2).
func atext(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0 || c >= 0x80
}

// isAddress reports whether s is [ [local-part] "@" ] domain-name with a
// dot-atom local part: a pvalue that needs no quotes (§2.2).
func isAddress(s string) bool {
	local, domain, ok := strings.Cut(s, "@")
	if !ok || strings.Contains(domain, "@") {
		return false
	}
	if local != "" && !isDotAtom(local) {
		return false
	}
	return isDomainName(domain)
}

// isDomainName reports whether s is a domain-name of RFC 6376 §3.5: two
// labels or more of letters, digits and hyphens (or UTF-8, RFC 8616).
func isDomainName(s string) bool {
	labels := strings.Split(s, ".")
	if len(labels) < 2 {
		return false
	}
	for _, l := range labels {
		if l == "" || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c >= 0x80) {
				return false
			}
		}
	}
	return true
}

func isDotAtom(s string) bool {
	for part := range strings.SplitSeq(s, ".") {
		if part == "" {
			return false
		}
		for i := 0; i < len(part); i++ {
			if !atext(part[i]) {
				return false
			}
		}
	}
	return true
}

// pvalue writes a property value (§2.2): as it is when it is a token or
// an address, else quoted.
func pvalue(v string) string {
	if isToken(v) || isAddress(v) {
		return v
	}
	return quote(v)
}

// quote makes a quoted-string (RFC 5322 §3.2.4).
func quote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c == '\r' || c == '\n':
			b.WriteByte(' ')
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// escapeComment keeps a comment's text within its parentheses.
func escapeComment(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '(' || c == ')' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c == '\r' || c == '\n':
			b.WriteByte(' ')
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// errSyntax marks a field that breaks the grammar of §2.2.
var errSyntax = errors.New("authres: syntax error")
