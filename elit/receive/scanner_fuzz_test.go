package receive

import (
	"reflect"
	"testing"
)

// bareNewline is the scanner's rule on the whole data at once, byte by
// byte: an LF not after a CR, or a CR not before an LF.
func bareNewline(data []byte) bool {
	for i, c := range data {
		if c == '\n' && (i == 0 || data[i-1] != '\r') || c == '\r' && (i+1 == len(data) || data[i+1] != '\n') {
			return true
		}
	}
	return false
}

// FuzzScanner: whatever the data and however it is cut into writes, the
// scanner finds a bare CR or LF exactly when the byte-by-byte rule does,
// and reads the same header fields as when the data comes in one write.
func FuzzScanner(f *testing.F) {
	for _, s := range []string{
		"Subject: x\r\n\r\nbody\r\n",
		"Subject: x\r\n\r\na\nb\r\n",
		"Subject: x\r\n\r\na\rb\r\n",
		"Subject: x\r\n\r\na\r",
		"Subject: x\r\n\r\n\r\n\r\n.\r\n",
		"From: a\r\n b\r\n\r\n\r\r\n",
		"X: y\r\n\r\n\n",
		"\r\n\r\n",
	} {
		f.Add([]byte(s), uint8(1), uint8(7))
	}
	f.Fuzz(func(t *testing.T, data []byte, a, b uint8) {
		scan := func(cuts ...int) (*scanner, error) {
			s := newScanner()
			at, k := 0, 0
			for at < len(data) {
				n := max(cuts[k%len(cuts)], 1)
				k++
				end := min(at+n, len(data))
				if _, err := s.Write(data[at:end]); err != nil {
					return s, err
				}
				at = end
			}
			return s, s.close()
		}
		whole, werr := scan(len(data) + 1)
		cut, cerr := scan(int(a), int(b))
		if werr != cerr {
			t.Fatalf("in one write: %v; cut into %d and %d: %v", werr, a, b, cerr)
		}
		if werr == errHeaderTooLong {
			return
		}
		if bare := werr == errBareNewline; bare != bareNewline(data) {
			t.Fatalf("bare newline found %v, the byte rule says %v (err %v)", bare, !bare, werr)
		}
		if werr == nil && !reflect.DeepEqual(whole.fields, cut.fields) {
			t.Fatalf("fields differ:\n%+v\n%+v", whole.fields, cut.fields)
		}
	})
}
