package smtp

import (
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

	for i, chr := range b[:n] {
		if chr == '\n' {
			r.curLineLength = 0
		}
		r.curLineLength++

		if r.curLineLength > r.LineLimit {
			if i == 0 {
				return 0, ErrTooLongLine
			}
			return i, nil
		}
	}

	return n, err
}
