package smtp

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"testing"
)

// Elit: the bulk paths of dataReader and lineLimitReader give what the
// byte-by-byte state machines gave (the references below), whatever the
// input and however it is split into reads.

func refData(in []byte) ([]byte, error) {
	r := bufio.NewReader(bytes.NewReader(in))
	state := 0
	var out []byte
	for {
		c, err := r.ReadByte()
		if err != nil {
			return out, io.ErrUnexpectedEOF
		}
		switch state {
		case 0:
			if c == '.' {
				state = 1
				continue
			}
			if c == '\r' {
				state = 3
				break
			}
			state = 4
		case 1:
			if c == '\r' {
				state = 2
				continue
			}
			state = 4
		case 2:
			if c == '\n' {
				return out, nil
			}
			r.UnreadByte()
			out = append(out, '\r')
			state = 3
			continue
		case 3:
			if c == '\n' {
				state = 0
				break
			}
			if c != '\r' {
				state = 4
			}
		case 4:
			if c == '\r' {
				state = 3
			}
		}
		out = append(out, c)
	}
}

func refLimit(in []byte, limit, chunk int) ([]byte, error) {
	cur := 0
	var out []byte
	for len(in) > 0 {
		b := in[:min(chunk, len(in))]
		in = in[len(b):]
		for i, c := range b {
			if c == '\n' {
				cur = 0
			}
			cur++
			if cur > limit {
				return append(out, b[:i]...), ErrTooLongLine
			}
		}
		out = append(out, b...)
	}
	return out, nil
}

type chunked struct {
	r io.Reader
	n int
}

func (c chunked) Read(b []byte) (int, error) { return c.r.Read(b[:min(len(b), c.n)]) }

func FuzzFastPaths(f *testing.F) {
	f.Add([]byte("a\r\n.b\r\n..\r\n.\rx\r\r\n.\r\n"), 3, 5)
	f.Add([]byte("hello\nworld\r\n\n.\r\n"), 1, 1)
	f.Add(bytes.Repeat([]byte("x"), 5000), 7, 4096)
	f.Fuzz(func(t *testing.T, in []byte, limit, chunk int) {
		limit = 1 + abs(limit)%64
		chunk = 1 + abs(chunk)%64
		want, wantErr := refData(in)
		dr := &dataReader{r: bufio.NewReaderSize(chunked{bytes.NewReader(in), chunk}, 16)}
		got, err := io.ReadAll(readerFunc(func(b []byte) (int, error) { return dr.Read(b[:min(len(b), chunk)]) }))
		if !bytes.Equal(got, want) || (err == nil) != (wantErr == nil) {
			t.Fatalf("data %q: got %q %v, want %q %v", in, got, err, want, wantErr)
		}
		want, wantErr = refLimit(in, limit, chunk)
		lr := &lineLimitReader{R: bytes.NewReader(in), LineLimit: limit}
		got = nil
		for {
			b := make([]byte, chunk)
			n, err := lr.Read(b)
			got = append(got, b[:n]...)
			if err != nil {
				if errors.Is(err, io.EOF) {
					err = nil
				}
				if !bytes.Equal(got, want) || !errors.Is(err, wantErr) && !(err == nil && wantErr == nil) {
					t.Fatalf("limit %d chunk %d %q: got %q %v, want %q %v", limit, chunk, in, got, err, want, wantErr)
				}
				return
			}
		}
	})
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(b []byte) (int, error) { return f(b) }

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}
