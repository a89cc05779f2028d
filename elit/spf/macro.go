package spf

import (
	"fmt"
	"strconv"
	"strings"
)

// macroString is a parsed macro-string (RFC 7208 §7.1): literal text and
// macros to expand.
type macroString []macroToken

// macroToken is literal text (letter 0) or a macro.
type macroToken struct {
	literal string // the text, for a literal or a %%, %_, %- escape
	escape  bool   // %%, %_ or %-: a macro-expand, for domain-end
	letter  byte   // in lower case
	upper   bool   // an upper-case letter: URL-escape the expansion
	digits  int    // keep this many right-hand parts; 0: all
	reverse bool
	delims  string // "" means "."
}

// parseMacroString parses a macro-string, or an explain-string when
// explain (§6.2: spaces and the macros c, r and t allowed too).
func parseMacroString(s string, explain bool) (macroString, error) {
	var ms macroString
	var lit strings.Builder
	flush := func() {
		if lit.Len() > 0 {
			ms = append(ms, macroToken{literal: lit.String()})
			lit.Reset()
		}
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '%' {
			// macro-literal = %x21-24 / %x26-7E; SP in an explain-string.
			if c < 0x21 || c > 0x7e {
				if !(explain && c == ' ') {
					return nil, syntaxError("byte %#02x in %q", c, s)
				}
			}
			lit.WriteByte(c)
			continue
		}
		if i+1 >= len(s) {
			return nil, syntaxError("%% at the end of %q", s)
		}
		i++
		switch s[i] {
		case '%', '_', '-':
			flush()
			ms = append(ms, macroToken{literal: map[byte]string{'%': "%", '_': " ", '-': "%20"}[s[i]], escape: true})
			continue
		case '{':
		default:
			return nil, syntaxError("%%%c in %q (§7.1)", s[i], s)
		}
		end := strings.IndexByte(s[i:], '}')
		if end < 0 {
			return nil, syntaxError("unclosed macro in %q", s)
		}
		t, err := parseMacro(s[i+1:i+end], explain)
		if err != nil {
			return nil, fmt.Errorf("%q: %w", s, err)
		}
		flush()
		ms = append(ms, t)
		i += end
	}
	flush()
	return ms, nil
}

// parseMacro parses macro-letter transformers *delimiter, the inside of
// %{...} (§7.1).
func parseMacro(s string, explain bool) (macroToken, error) {
	var t macroToken
	if s == "" {
		return t, syntaxError("empty macro")
	}
	l := s[0]
	if l >= 'A' && l <= 'Z' {
		t.upper, l = true, l+'a'-'A'
	}
	letters := "slodiphv"
	if explain {
		letters += "crt"
	}
	if !strings.ContainsRune(letters, rune(l)) {
		return t, syntaxError("macro letter %q", s[0])
	}
	t.letter = l
	i := 1
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	if i > 1 {
		n, err := strconv.Atoi(s[1:i])
		if err != nil || n > 128 {
			n = 128 // more parts than a name can have
		}
		if n == 0 {
			return t, syntaxError("macro %q keeps 0 parts (§7.3)", s)
		}
		t.digits = n
	}
	if i < len(s) && (s[i] == 'r' || s[i] == 'R') {
		t.reverse = true
		i++
	}
	t.delims = s[i:]
	for j := 0; j < len(t.delims); j++ {
		if strings.IndexByte(".-+,/_=", t.delims[j]) < 0 {
			return t, syntaxError("macro %q: delimiter %q", s, t.delims[j])
		}
	}
	return t, nil
}

// expand expands ms (§7.3, §7.4), the value of a macro letter given by
// value.
func (ms macroString) expand(value func(letter byte) string) string {
	var b strings.Builder
	for _, t := range ms {
		if t.letter == 0 {
			b.WriteString(t.literal)
			continue
		}
		v := value(t.letter)
		if t.digits > 0 || t.reverse || t.delims != "" {
			delims := t.delims
			if delims == "" {
				delims = "."
			}
			parts := splitKeep(v, delims)
			if t.reverse {
				for i, j := 0, len(parts)-1; i < j; i, j = i+1, j-1 {
					parts[i], parts[j] = parts[j], parts[i]
				}
			}
			if t.digits > 0 && t.digits < len(parts) {
				parts = parts[len(parts)-t.digits:]
			}
			v = strings.Join(parts, ".")
		}
		if t.upper {
			v = urlEscape(v)
		}
		b.WriteString(v)
	}
	return b.String()
}

// splitKeep splits s at every byte of delims, keeping empty parts.
func splitKeep(s, delims string) []string {
	var parts []string
	start := 0
	for i := 0; i < len(s); i++ {
		if strings.IndexByte(delims, s[i]) >= 0 {
			parts = append(parts, s[start:i])
			start = i + 1
		}
	}
	return append(parts, s[start:])
}

// urlEscape escapes every byte but the unreserved ones (§7.3, RFC 3986
// §2.3), as upper-case macro letters ask.
func urlEscape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}
