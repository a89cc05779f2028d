package smtp

import (
	"bytes"
	"errors"
	"io"
)

var ErrTooLongLine = errors.New("smtp: too long a line in input stream")

// lineLimitReader reads from the underlying Reader but restricts
// line length of lines in input stream to a certain length.
//
// If line length exceeds the limit - Read returns ErrTooLongLine.
// Elit: the bytes before the limit is crossed are returned, and the next
// Read fails (upstream dropped the whole read, pipelined commands before
// the long line included).
type lineLimitReader struct {
	R         io.Reader
	LineLimit int

	curLineLength int
}

// tooLong reports whether a line went past the limit: every Read fails
// from then on.
func (r *lineLimitReader) tooLong() bool {
	return r.LineLimit > 0 && r.curLineLength > r.LineLimit
}

func (r *lineLimitReader) Read(b []byte) (int, error) {
	if r.tooLong() {
		return 0, ErrTooLongLine
	}

	n, err := r.R.Read(b)
	if r.LineLimit == 0 {
		return n, err
	}

	// Elit: the bytes between line feeds are counted at once, as the
	// byte-by-byte loop of upstream did: a line feed starts a line and
	// counts as its first byte; the byte that takes a line past the
	// limit is not returned.
	for pos := 0; pos < n; {
		end := n
		if i := bytes.IndexByte(b[pos:n], '\n'); i >= 0 {
			end = pos + i
		}
		if x := pos + r.LineLimit - r.curLineLength; x < end {
			r.curLineLength = r.LineLimit + 1
			if x == 0 {
				return 0, ErrTooLongLine
			}
			return x, nil
		}
		r.curLineLength += end - pos
		if end == n {
			break
		}
		r.curLineLength = 1 // the line feed
		if r.curLineLength > r.LineLimit {
			if end == 0 {
				return 0, ErrTooLongLine
			}
			return end, nil
		}
		pos = end + 1
	}

	return n, err
}
