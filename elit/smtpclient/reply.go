package smtpclient

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"elit.local/elit/reply"
)

// Limits of a reply, so that a server cannot make us hold any amount of
// it: RFC 5321 §4.5.3.1.5 allows 512 octets a line, and EHLO lists a few
// dozen lines.
const (
	maxReplyLine  = 4096
	maxReplyLines = 200
)

// errMalformed is a reply that is not one (RFC 5321 §4.2).
var errMalformed = errors.New("malformed reply")

// readReply reads one reply (RFC 5321 §4.2): lines "CODE-text" then a
// last line "CODE text" (or "CODE"), all with the same three-digit code
// from 200 to 599. When the first line starts with an enhanced status
// code of the reply's class (RFC 3463, RFC 2034 §4), it goes into the
// Reply's Enhanced and is taken off every line that repeats it. The
// Reply's Text is the lines' texts joined by spaces, with control
// characters and invalid UTF-8 made harmless; lines are the texts as they
// came (the EHLO keywords).
func readReply(r *bufio.Reader) (*reply.Reply, []string, error) {
	var lines []string
	code := 0
	for {
		line, err := readLine(r)
		if err != nil {
			return nil, nil, err
		}
		if len(line) < 3 || len(line) > 3 && line[3] != ' ' && line[3] != '-' {
			return nil, nil, fmt.Errorf("%w: %q", errMalformed, clip(line))
		}
		n := 0
		for _, c := range []byte(line[:3]) {
			if c < '0' || c > '9' {
				return nil, nil, fmt.Errorf("%w: %q", errMalformed, clip(line))
			}
			n = n*10 + int(c-'0')
		}
		if n < 200 || n > 599 {
			return nil, nil, fmt.Errorf("%w: code %d", errMalformed, n)
		}
		if code != 0 && n != code {
			return nil, nil, fmt.Errorf("%w: codes %d and %d in one reply", errMalformed, code, n)
		}
		code = n
		if len(lines) == maxReplyLines {
			return nil, nil, fmt.Errorf("%w: over %d lines", errMalformed, maxReplyLines)
		}
		if len(line) > 4 {
			lines = append(lines, line[4:])
		} else {
			lines = append(lines, "")
		}
		if len(line) == 3 || line[3] == ' ' {
			break
		}
	}
	rp := &reply.Reply{Code: code}
	texts := make([]string, len(lines))
	copy(texts, lines)
	if first, _, _ := strings.Cut(texts[0], " "); first != "" {
		if e, ok := reply.ParseEnhanced(first); ok && e[0] == code/100 {
			rp.Enhanced = e
			for i, t := range texts {
				if f, rest, _ := strings.Cut(t, " "); f == first {
					texts[i] = rest
				}
			}
		}
	}
	rp.Text = clean(strings.Join(texts, " "))
	return rp, lines, nil
}

// readLine reads a line ending in LF (a CR before it is dropped), of at
// most maxReplyLine bytes.
func readLine(r *bufio.Reader) (string, error) {
	var b []byte
	for {
		chunk, err := r.ReadSlice('\n')
		if len(b)+len(chunk) > maxReplyLine {
			return "", fmt.Errorf("%w: a line over %d bytes", errMalformed, maxReplyLine)
		}
		b = append(b, chunk...)
		if err == nil {
			break
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return "", err
		}
	}
	b = bytes.TrimSuffix(b[:len(b)-1], []byte("\r"))
	return string(b), nil
}

// clean makes a reply's text safe to log, store and quote in a DSN:
// valid UTF-8, control characters (a stray CR, a NUL, an escape) as
// spaces, runs of spaces as one.
func clean(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == utf8.RuneError { // strings.Map makes invalid UTF-8 RuneError
			return ' '
		}
		return r
	}, s)
	return strings.Join(strings.Fields(s), " ")
}

// clip shortens a line quoted in an error.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}
