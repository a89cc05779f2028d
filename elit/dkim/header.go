package dkim

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
)

// MaxHeaderSize bounds the header section ReadHeader keeps in memory.
const MaxHeaderSize = 1 << 20

// Field is one header field as it is in the message (RFC 5322 §2.2).
type Field struct {
	Name string // the field name as written
	// Raw is the whole field: name, colon, value with its folding, and
	// the CRLF that ends it (absent only from a message cut short).
	Raw []byte
}

// Value returns the field body: what follows the colon, folding kept,
// without the final CRLF.
func (f Field) Value() []byte {
	v := f.Raw[bytes.IndexByte(f.Raw, ':')+1:]
	v = bytes.TrimSuffix(v, []byte("\n"))
	return bytes.TrimSuffix(v, []byte("\r"))
}

// Is reports whether the field is named name, in any case (RFC 5322 §1.2.2).
func (f Field) Is(name string) bool { return strings.EqualFold(f.Name, name) }

// Header is a message's header section, fields in order from the top.
type Header []Field

// ReadHeader reads the header section of a message from r, up to and
// including the empty line that ends it (or the end of the input: a
// message without a body), leaving r at the start of the body. Lines end
// with CRLF; a lone LF is taken as a line end too, and kept as it is.
// A line that is neither a field nor its continuation is an error, as is
// a header over MaxHeaderSize.
func ReadHeader(r *bufio.Reader) (Header, error) {
	var h Header
	size := 0
	for {
		line, err := r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// A long line: gather it whole.
			long := append([]byte(nil), line...)
			for errors.Is(err, bufio.ErrBufferFull) && size+len(long) <= MaxHeaderSize {
				line, err = r.ReadSlice('\n')
				long = append(long, line...)
			}
			line = long
		}
		if err != nil && !errors.Is(err, io.EOF) {
			if errors.Is(err, bufio.ErrBufferFull) {
				return nil, fmt.Errorf("header section over %d bytes", MaxHeaderSize)
			}
			return nil, fmt.Errorf("read header: %w", err)
		}
		size += len(line)
		if size > MaxHeaderSize {
			return nil, fmt.Errorf("header section over %d bytes", MaxHeaderSize)
		}
		if len(line) == 0 {
			return h, nil // end of input
		}
		if bytes.Equal(line, []byte("\r\n")) || bytes.Equal(line, []byte("\n")) {
			return h, nil
		}
		if line[0] == ' ' || line[0] == '\t' {
			if len(h) == 0 {
				return nil, errors.New("header starts with a continuation line")
			}
			last := &h[len(h)-1]
			last.Raw = append(last.Raw, line...)
		} else {
			name, ok := fieldName(line)
			if !ok {
				return nil, fmt.Errorf("malformed header line %q", clip(string(line)))
			}
			h = append(h, Field{Name: name, Raw: append([]byte(nil), line...)})
		}
		if errors.Is(err, io.EOF) {
			return h, nil
		}
	}
}

// ParseHeader parses a header section (as ReadHeader) from b and returns
// it with the offset of the body.
func ParseHeader(b []byte) (Header, int, error) {
	br := bytes.NewReader(b)
	r := bufio.NewReader(br)
	h, err := ReadHeader(r)
	if err != nil {
		return nil, 0, err
	}
	return h, len(b) - br.Len() - r.Buffered(), nil
}

// fieldName returns the name of the field that line starts: printable
// ASCII but colon (RFC 5322 §3.6.8 ftext), then optional WSP (the
// obsolete syntax, RFC 5322 §4.5), then a colon.
func fieldName(line []byte) (string, bool) {
	i := 0
	for i < len(line) && line[i] >= 33 && line[i] <= 126 && line[i] != ':' {
		i++
	}
	if i == 0 {
		return "", false
	}
	j := i
	for j < len(line) && (line[j] == ' ' || line[j] == '\t') {
		j++
	}
	if j == len(line) || line[j] != ':' {
		return "", false
	}
	return string(line[:i]), true
}
