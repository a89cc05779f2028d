package dkim

import (
	"bytes"
	"errors"
	"fmt"
	"hash"
	"io"
	"strings"
)

// Canon is a canonicalization algorithm (RFC 6376 §3.4).
type Canon uint8

// The algorithms. Relaxed is the zero value: what Signer uses unless told
// otherwise, since it survives the rewrapping relays do. A signature
// without c= is simple/simple (RFC 6376 §3.5).
const (
	Relaxed Canon = iota // RFC 6376 §3.4.2 (header), §3.4.4 (body)
	Simple               // RFC 6376 §3.4.1 (header), §3.4.3 (body)
)

func (c Canon) String() string {
	if c == Simple {
		return "simple"
	}
	return "relaxed"
}

func parseCanon(s string) (Canon, error) {
	switch s {
	case "simple":
		return Simple, nil
	case "relaxed":
		return Relaxed, nil
	}
	return 0, fmt.Errorf("unknown canonicalization %q", s)
}

// ParseCanonicalization parses the value of a c= tag (RFC 6376 §3.5):
// "header/body", or "header" alone, the body being simple then.
// Algorithm names are case-sensitive, as tag values are.
func ParseCanonicalization(s string) (header, body Canon, err error) {
	hs, bs, two := strings.Cut(s, "/")
	if header, err = parseCanon(hs); err != nil {
		return 0, 0, err
	}
	body = Simple
	if two {
		if body, err = parseCanon(bs); err != nil {
			return 0, 0, err
		}
	}
	return header, body, nil
}

// CanonHeader appends to dst the header field raw (as in Field.Raw)
// canonicalized with c, ending with CRLF. Simple (RFC 6376 §3.4.1) keeps
// it as it is; relaxed (§3.4.2) lowercases the name, unfolds the value,
// turns each run of WSP into one space, and removes WSP at the end of
// the value and around the colon.
func CanonHeader(dst []byte, c Canon, raw []byte) []byte {
	if c == Simple {
		dst = append(dst, raw...)
		if !bytes.HasSuffix(raw, []byte("\n")) {
			dst = append(dst, '\r', '\n')
		}
		return dst
	}
	colon := bytes.IndexByte(raw, ':')
	if colon < 0 {
		colon = len(raw) // not a field; ReadHeader never makes one
	}
	name := bytes.TrimRight(raw[:colon], " \t")
	for _, b := range name {
		if b >= 'A' && b <= 'Z' {
			b += 'a' - 'A'
		}
		dst = append(dst, b)
	}
	dst = append(dst, ':')
	if colon == len(raw) {
		return append(dst, '\r', '\n')
	}
	wsp, started := false, false
	v := raw[colon+1:]
	for i := 0; i < len(v); i++ {
		b := v[i]
		switch {
		case b == '\r' && i+1 < len(v) && v[i+1] == '\n':
			i++ // unfold: the CRLF goes, the WSP after it counts
		case b == '\n':
		case b == ' ' || b == '\t':
			wsp = true
		default:
			if wsp && started {
				dst = append(dst, ' ')
			}
			wsp, started = false, true
			dst = append(dst, b)
		}
	}
	return append(dst, '\r', '\n')
}

// NewBodyCanonicalizer returns a writer that canonicalizes the body
// written to it with c and writes the result to w; Close writes what the
// end of the body decides and must be called once. It keeps only a few
// octets between writes, so a body streams through it.
//
// Simple (RFC 6376 §3.4.3) removes the empty lines at the end and makes
// sure the body ends with CRLF (an empty body is one CRLF). Relaxed
// (§3.4.4) also removes WSP at the end of lines and turns each run of WSP
// into one space; an empty body stays empty. Lines end with CRLF; a lone
// CR or LF is an ordinary octet.
func NewBodyCanonicalizer(c Canon, w io.Writer) io.WriteCloser {
	return &bodyCanon{w: w, relaxed: c == Relaxed, buf: make([]byte, 0, 4<<10)}
}

const bodyBufSize = 16 << 10

type bodyCanon struct {
	w       io.Writer
	relaxed bool
	buf     []byte
	crlfs   int  // line ends not written yet: they may end the body
	cr      bool // the last octet written was a CR
	wsp     bool // WSP not written yet (relaxed): it may end a line
	any     bool // some content was written
	err     error
}

func (c *bodyCanon) Write(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	n := len(p)
	if c.cr && len(p) > 0 {
		c.cr = false
		if p[0] == '\n' {
			c.lineEnd()
			p = p[1:]
		} else {
			c.content([]byte{'\r'})
		}
	}
	for len(p) > 0 {
		b := p[0]
		switch {
		case b == '\r':
			if len(p) == 1 {
				c.cr = true
				p = p[1:]
				continue
			}
			if p[1] == '\n' {
				c.lineEnd()
				p = p[2:]
				continue
			}
			c.content(p[:1])
			p = p[1:]
		case c.relaxed && (b == ' ' || b == '\t'):
			c.wsp = true
			p = p[1:]
		default:
			// A run of ordinary octets.
			var j int
			if c.relaxed {
				j = 1
				for j < len(p) && p[j] != '\r' && p[j] != ' ' && p[j] != '\t' {
					j++
				}
			} else {
				j = bytes.IndexByte(p[1:], '\r') + 1
				if j == 0 {
					j = len(p)
				}
			}
			c.content(p[:j])
			p = p[j:]
		}
	}
	if c.err != nil {
		return 0, c.err
	}
	return n, nil
}

func (c *bodyCanon) lineEnd() {
	c.wsp = false // relaxed: WSP at the end of a line goes
	c.crlfs++
}

func (c *bodyCanon) content(run []byte) {
	for ; c.crlfs > 0; c.crlfs-- {
		c.buf = append(c.buf, '\r', '\n')
	}
	if c.wsp {
		c.buf = append(c.buf, ' ')
		c.wsp = false
	}
	c.any = true
	if len(run) > bodyBufSize/2 {
		c.flush()
		c.write(run)
		return
	}
	c.buf = append(c.buf, run...)
	if len(c.buf) >= bodyBufSize {
		c.flush()
	}
}

func (c *bodyCanon) flush() {
	if len(c.buf) > 0 {
		c.write(c.buf)
		c.buf = c.buf[:0]
	}
}

func (c *bodyCanon) write(p []byte) {
	if c.err == nil {
		_, c.err = c.w.Write(p)
	}
}

func (c *bodyCanon) Close() error {
	if c.cr {
		c.cr = false
		c.content([]byte{'\r'})
	}
	if c.any || !c.relaxed {
		c.buf = append(c.buf, '\r', '\n')
	}
	c.crlfs, c.wsp = 0, false
	c.flush()
	return c.err
}

// limitHash hashes the first limit octets written to it (all when limit
// is negative) and counts them all: a body hash with its l= (RFC 6376
// §3.5).
type limitHash struct {
	h     hash.Hash
	limit int64
	n     int64
}

func (l *limitHash) Write(p []byte) (int, error) {
	n := len(p)
	if l.limit >= 0 {
		if rest := l.limit - l.n; int64(len(p)) > rest {
			p = p[:max(rest, 0)]
		}
	}
	l.h.Write(p)
	l.n += int64(n)
	return n, nil
}

// BodyHasher computes a body hash (RFC 6376 §3.7, the bh= tag): the body
// written to it is canonicalized, cut at the length limit (l=), and
// hashed.
type BodyHasher struct {
	canon io.WriteCloser
	lh    *limitHash
}

// NewBodyHasher returns a BodyHasher for canonicalization c, hash h and
// length limit limit (negative: the whole body).
func NewBodyHasher(c Canon, h hash.Hash, limit int64) *BodyHasher {
	lh := &limitHash{h: h, limit: limit}
	return &BodyHasher{canon: NewBodyCanonicalizer(c, lh), lh: lh}
}

// Write adds body octets.
func (b *BodyHasher) Write(p []byte) (int, error) { return b.canon.Write(p) }

// Sum ends the body and returns its hash; call it once, after the last
// Write.
func (b *BodyHasher) Sum() []byte {
	b.canon.Close()
	return b.lh.h.Sum(nil)
}

// Len returns the length of the canonicalized body, all of it (also past
// the limit); valid after Sum.
func (b *BodyHasher) Len() int64 { return b.lh.n }

// CopyBody writes the rest of r to every writer of ws, in pieces, as it
// reads them: the body of a message streams through its hashers without
// being kept whole (io.Copy would let a strings.Reader hand over one
// copy of the whole).
func CopyBody(ws []io.Writer, r io.Reader) error {
	buf := make([]byte, 16<<10)
	for {
		n, err := r.Read(buf)
		for _, w := range ws {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return werr
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}
