package dkim

import (
	"context"
	"io"
	"strings"
	"testing"

	msgauth "github.com/emersion/go-msgauth/dkim"
)

// benchMessage is testMessage's header and a text body of about size
// octets: lines of words, as mail is.
func benchMessage(size int) string {
	var b strings.Builder
	hdr, _, _ := strings.Cut(testMessage, "\r\n\r\n")
	b.WriteString(hdr + "\r\n\r\n")
	words := strings.Fields("the quick brown fox jumps over the lazy dog and then  some\tmore words follow in a line of mail")
	col := 0
	for i := 0; b.Len() < size; i++ {
		w := words[i%len(words)]
		if col+len(w) > 72 {
			b.WriteString("\r\n")
			col = 0
		}
		b.WriteString(w + " ")
		col += len(w) + 1
	}
	b.WriteString("\r\n")
	return b.String()
}

var benchSizes = []struct {
	name string
	size int
}{{"4KiB", 4 << 10}, {"1MiB", 1 << 20}}

// BenchmarkSign: relaxed/relaxed signatures with rsa-2048 and ed25519,
// ours and github.com/emersion/go-msgauth's in the same run.
func BenchmarkSign(b *testing.B) {
	ss := testSigners(b)
	for _, impl := range []string{"ours", "msgauth"} {
		for _, alg := range []string{"rsa", "ed25519"} {
			s := ss[alg]
			for _, sz := range benchSizes {
				msg := benchMessage(sz.size)
				b.Run(impl+"/"+alg+"/"+sz.name, func(b *testing.B) {
					b.SetBytes(int64(len(msg)))
					for b.Loop() {
						if impl == "ours" {
							if _, err := s.Sign(strings.NewReader(msg)); err != nil {
								b.Fatal(err)
							}
							continue
						}
						ms, err := msgauth.NewSigner(&msgauth.SignOptions{Domain: s.Domain, Selector: s.Selector, Signer: s.Key,
							HeaderCanonicalization: msgauth.CanonicalizationRelaxed, BodyCanonicalization: msgauth.CanonicalizationRelaxed,
							HeaderKeys: []string{"From", "To", "Subject", "Date", "Message-ID", "MIME-Version", "Content-Type"}})
						if err != nil {
							b.Fatal(err)
						}
						if _, err := io.Copy(ms, strings.NewReader(msg)); err != nil {
							b.Fatal(err)
						}
						if err := ms.Close(); err != nil {
							b.Fatal(err)
						}
						_ = ms.Signature()
					}
				})
			}
		}
	}
}

// BenchmarkVerify: verifying one relaxed/relaxed signature, ours and
// go-msgauth's, keys from memory.
func BenchmarkVerify(b *testing.B) {
	ss := testSigners(b)
	z := testZone(b)
	resolver := zone(z)
	lookup := func(name string) ([]string, error) { return []string{z[strings.ToLower(name)]}, nil }
	for _, impl := range []string{"ours", "msgauth"} {
		for _, alg := range []string{"rsa", "ed25519"} {
			for _, sz := range benchSizes {
				msg := benchMessage(sz.size)
				field, err := ss[alg].Sign(strings.NewReader(msg))
				if err != nil {
					b.Fatal(err)
				}
				msg = field + msg
				b.Run(impl+"/"+alg+"/"+sz.name, func(b *testing.B) {
					b.SetBytes(int64(len(msg)))
					for b.Loop() {
						if impl == "ours" {
							res, err := Verify(context.Background(), resolver, strings.NewReader(msg))
							if err != nil || res[0].Status != Pass {
								b.Fatal(res, err)
							}
							continue
						}
						vs, err := msgauth.VerifyWithOptions(strings.NewReader(msg), &msgauth.VerifyOptions{LookupTXT: lookup})
						if err != nil || vs[0].Err != nil {
							b.Fatal(vs, err)
						}
					}
				})
			}
		}
	}
}
