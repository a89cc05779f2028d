package authres

import (
	"fmt"
	"strconv"
	"strings"
)

// Parse reads the value of an Authentication-Results field (after the
// colon, folded or not) by the grammar of RFC 8601 §2.2. Method, result,
// property type and name come out in lower case; comments are dropped
// but the first after a result. Property values are read liberally (a
// header.b with "/" unquoted, as many write it); everything else
// strictly.
func Parse(value string) (Header, error) {
	p := &parser{s: value}
	var h Header
	p.cfws()
	id, err := p.value()
	if err != nil {
		return h, fmt.Errorf("authserv-id: %w", err)
	}
	h.AuthServID = id
	p.cfws()
	if p.digit() {
		h.Version, err = p.number()
		if err != nil {
			return h, err
		}
		p.cfws()
	}
	for {
		if p.end() {
			break
		}
		if !p.consume(';') {
			return h, p.errorf("want ;")
		}
		p.cfws()
		if p.end() && len(h.Results) > 0 {
			break // a final ";" as some write
		}
		start := p.i
		kw, err := p.keyword()
		if err != nil {
			return h, err
		}
		p.cfws()
		if strings.EqualFold(kw, "none") && len(h.Results) == 0 && p.end() {
			return h, nil // no-result
		}
		p.i = start
		r, err := p.resinfo()
		if err != nil {
			return h, err
		}
		h.Results = append(h.Results, r)
	}
	if len(h.Results) == 0 {
		return h, p.errorf("no result, not even none")
	}
	return h, nil
}

// resinfo reads methodspec [reasonspec] *propspec (§2.2), after ";".
func (p *parser) resinfo() (Result, error) {
	var r Result
	m, err := p.keyword()
	if err != nil {
		return r, err
	}
	r.Method = strings.ToLower(m)
	p.cfws()
	if p.consume('/') {
		p.cfws()
		if r.MethodVersion, err = p.number(); err != nil {
			return r, err
		}
		p.cfws()
	}
	if !p.consume('=') {
		return r, p.errorf("want = after %s", m)
	}
	p.cfws()
	res, err := p.keyword()
	if err != nil {
		return r, err
	}
	r.Result = strings.ToLower(res)
	p.comments = nil
	p.cfws()
	if len(p.comments) > 0 {
		r.Comment = p.comments[0]
	}
	for !p.end() && p.peek() != ';' {
		k, err := p.keyword()
		if err != nil {
			return r, err
		}
		p.cfws()
		switch {
		case strings.EqualFold(k, "reason") && p.consume('='):
			if r.Reason != "" || len(r.Properties) > 0 {
				return r, p.errorf("reason out of place")
			}
			p.cfws()
			if r.Reason, err = p.value(); err != nil {
				return r, err
			}
		case p.consume('.'):
			p.cfws()
			name, err := p.keyword()
			if err != nil {
				return r, err
			}
			p.cfws()
			if !p.consume('=') {
				return r, p.errorf("want = after %s.%s", k, name)
			}
			v, err := p.pvalue()
			if err != nil {
				return r, err
			}
			r.Properties = append(r.Properties, Property{strings.ToLower(k), strings.ToLower(name), v})
		default:
			return r, p.errorf("want a property after %s", k)
		}
		p.cfws()
	}
	return r, nil
}

// parser reads a field value.
type parser struct {
	s        string
	i        int
	comments []string // seen by cfws
}

func (p *parser) errorf(format string, args ...any) error {
	return fmt.Errorf("%w at %d: %s", errSyntax, p.i, fmt.Sprintf(format, args...))
}

func (p *parser) end() bool   { return p.i >= len(p.s) }
func (p *parser) peek() byte  { return p.s[p.i] }
func (p *parser) digit() bool { return !p.end() && p.s[p.i] >= '0' && p.s[p.i] <= '9' }

func (p *parser) consume(c byte) bool {
	if !p.end() && p.s[p.i] == c {
		p.i++
		return true
	}
	return false
}

// cfws skips folding white space and comments (RFC 5322 §3.2.2), keeping
// the comments' text. An unclosed comment runs to the end.
func (p *parser) cfws() {
	for !p.end() {
		switch p.s[p.i] {
		case ' ', '\t', '\r', '\n':
			p.i++
		case '(':
			p.i++
			var b strings.Builder
			for depth := 1; depth > 0 && !p.end(); p.i++ {
				c := p.s[p.i]
				switch {
				case c == '\\' && p.i+1 < len(p.s):
					p.i++
					c = p.s[p.i]
				case c == '(':
					depth++
				case c == ')':
					depth--
					if depth == 0 {
						continue
					}
				}
				b.WriteByte(c)
			}
			p.comments = append(p.comments, b.String())
		default:
			return
		}
	}
}

// number reads 1*DIGIT.
func (p *parser) number() (int, error) {
	start := p.i
	for p.digit() {
		p.i++
	}
	n, err := strconv.Atoi(p.s[start:p.i])
	if err != nil || n > 1<<20 {
		return 0, p.errorf("bad number %q", p.s[start:p.i])
	}
	return n, nil
}

// keyword reads a Keyword (ldh-str, RFC 5321 §4.1.2).
func (p *parser) keyword() (string, error) {
	start := p.i
	for !p.end() {
		c := p.s[p.i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			break
		}
		p.i++
	}
	if p.i == start {
		return "", p.errorf("want a keyword")
	}
	return p.s[start:p.i], nil
}

// value reads a token or a quoted-string (RFC 2045 §5.1).
func (p *parser) value() (string, error) {
	if !p.end() && p.peek() == '"' {
		return p.quoted()
	}
	start := p.i
	for !p.end() && tokenChar(p.s[p.i]) {
		p.i++
	}
	if p.i == start {
		return "", p.errorf("want a value")
	}
	return p.s[start:p.i], nil
}

// quoted reads a quoted-string (RFC 5322 §3.2.4), unescaped.
func (p *parser) quoted() (string, error) {
	p.i++ // the opening quote
	var b strings.Builder
	for !p.end() {
		c := p.s[p.i]
		p.i++
		switch c {
		case '"':
			return b.String(), nil
		case '\\':
			if p.end() {
				return "", p.errorf("unfinished quoted-pair")
			}
			c = p.s[p.i]
			p.i++
		}
		if c == '\r' || c == '\n' {
			continue // folding inside the string (an escaped one too)
		}
		b.WriteByte(c)
	}
	return "", p.errorf("unclosed quoted-string")
}

// pvalue reads a property value (§2.2): a quoted-string (a quoted local
// part keeps its quotes when "@" domain follows), or the text up to
// white space, a comment or ";".
func (p *parser) pvalue() (string, error) {
	p.cfws()
	if !p.end() && p.peek() == '"' {
		start := p.i
		q, err := p.quoted()
		if err != nil {
			return "", err
		}
		if p.end() || p.peek() != '@' {
			return q, nil
		}
		local := p.s[start:p.i]
		return local + p.bare(), nil
	}
	return p.bare(), nil
}

// bare reads up to white space, a comment or ";".
func (p *parser) bare() string {
	start := p.i
	for !p.end() && !strings.ContainsRune(" \t\r\n(;", rune(p.s[p.i])) {
		p.i++
	}
	return p.s[start:p.i]
}

// Field is a header field: its name and its value after the colon.
type Field struct {
	Name, Value string
}

// AuthServID returns the authserv-id of an Authentication-Results
// field's value (§2.5), read even when the rest breaks the grammar: a
// forgery need not be well formed to be removed.
func AuthServID(value string) (string, bool) {
	p := &parser{s: value}
	p.cfws()
	id, err := p.value()
	return id, err == nil
}

// Ours returns the indexes of the Authentication-Results fields of
// header that carry authservID (compared without regard to case):
// added by us, or forged when the message comes from outside, and so to
// be removed before we add ours (RFC 8601 §5).
func Ours(header []Field, authservID string) []int {
	var out []int
	for i, f := range header {
		if !strings.EqualFold(strings.TrimSpace(f.Name), "Authentication-Results") {
			continue
		}
		if id, ok := AuthServID(f.Value); ok && strings.EqualFold(id, authservID) {
			out = append(out, i)
		}
	}
	return out
}
