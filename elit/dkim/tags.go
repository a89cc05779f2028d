package dkim

import (
	"errors"
	"fmt"
	"strings"
)

// Tag is one tag=value pair of a tag list.
type Tag struct {
	Name  string
	Value string // as written, without the whitespace around it
}

// TagList is a tag=value list (RFC 6376 §3.2) in the order written: the
// syntax of DKIM-Signature fields, key records, and ARC-Message-Signature
// and ARC-Seal fields (RFC 8617 §4.1).
type TagList []Tag

// Get returns the value of the tag named name (names are case-sensitive,
// RFC 6376 §3.2) and whether it is present.
func (l TagList) Get(name string) (string, bool) {
	for _, t := range l {
		if t.Name == name {
			return t.Value, true
		}
	}
	return "", false
}

var errEmptyTagList = errors.New("empty tag list")

// ParseTagList parses a tag list strictly (RFC 6376 §3.2):
//
//	tag-list  =  tag-spec *( ";" tag-spec ) [ ";" ]
//	tag-spec  =  [FWS] tag-name [FWS] "=" [FWS] tag-value [FWS]
//	tag-name  =  ALPHA *ALNUMPUNC
//	tag-value =  [ tval *( 1*(WSP / FWS) tval ) ]
//	tval      =  1*VALCHAR      ; VALCHAR = %x21-3A / %x3C-7E
//
// FWS is spaces and tabs, and CRLF followed by one of them (a folded
// header field). A tag named twice is an error ("Tags with duplicate
// names MUST NOT occur"); so are an empty tag-spec (";;"), a name that
// is not ALPHA *ALNUMPUNC, and octets outside VALCHAR in a value. Like
// every implementation, it accepts whitespace after the final ";", which
// DNS records often have. Values keep their inner whitespace: the callers
// that read base64 (b=, bh=, p=) remove it.
func ParseTagList(s string) (TagList, error) {
	var list TagList
	i := skipFWS(s, 0)
	if i == len(s) {
		return nil, errEmptyTagList
	}
	for {
		start := i
		for i < len(s) && isAlnumPunc(s[i]) {
			i++
		}
		name := s[start:i]
		if name == "" || !isAlpha(name[0]) {
			return nil, fmt.Errorf("tag list: bad tag name at %q", clip(s[start:]))
		}
		i = skipFWS(s, i)
		if i == len(s) || s[i] != '=' {
			return nil, fmt.Errorf("tag list: no \"=\" after tag %q", name)
		}
		i = skipFWS(s, i+1)
		vstart, vend := i, i
		for i < len(s) && s[i] != ';' {
			c := s[i]
			switch {
			case c >= 0x21 && c <= 0x7e:
				i++
				vend = i
			case c == ' ' || c == '\t' || c == '\r':
				j := skipFWS(s, i)
				if j == i {
					return nil, fmt.Errorf("tag list: bare CR in tag %q", name)
				}
				i = j
			default:
				return nil, fmt.Errorf("tag list: octet %#x in the value of tag %q", c, name)
			}
		}
		for _, t := range list {
			if t.Name == name {
				return nil, fmt.Errorf("tag list: duplicate tag %q", name)
			}
		}
		list = append(list, Tag{Name: name, Value: s[vstart:vend]})
		if i == len(s) {
			return list, nil
		}
		// s[i] == ';'
		i = skipFWS(s, i+1)
		if i == len(s) {
			return list, nil
		}
	}
}

// skipFWS returns the index of the first octet at or after i that is not
// folding whitespace: SP, HTAB, or CRLF followed by SP or HTAB (RFC 5322
// §3.2.2).
func skipFWS(s string, i int) int {
	for i < len(s) {
		switch {
		case s[i] == ' ' || s[i] == '\t':
			i++
		case s[i] == '\r' && i+2 < len(s) && s[i+1] == '\n' && (s[i+2] == ' ' || s[i+2] == '\t'):
			i += 3
		default:
			return i
		}
	}
	return i
}

func isAlpha(c byte) bool { return c|0x20 >= 'a' && c|0x20 <= 'z' }

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func isAlnumPunc(c byte) bool { return isAlpha(c) || isDigit(c) || c == '_' }

// removeWSP returns s without spaces, tabs, CRs and LFs: a base64 value
// (RFC 6376 §3.5 b=, bh=; §3.6.1 p=) may be folded anywhere.
func removeWSP(s string) string {
	if !strings.ContainsAny(s, " \t\r\n") {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case ' ', '\t', '\r', '\n':
		default:
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

// clip shortens s for an error message.
func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}
