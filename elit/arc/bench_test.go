package arc

import (
	"context"
	"strings"
	"testing"
)

// benchMessage is testMessage with a text body of about 4 KiB.
func benchMessage() string {
	var b strings.Builder
	b.WriteString(testMessage)
	for b.Len() < 4<<10 {
		b.WriteString("the quick brown fox jumps over the lazy dog and then some more words\r\n")
	}
	return b.String()
}

// BenchmarkSeal: sealing a 4 KiB message that has one ARC set (rsa-2048:
// two signatures).
func BenchmarkSeal(b *testing.B) {
	ss, records := hops(b)
	resolver := memZone(records)
	one, err := ss["one"].Seal(strings.NewReader(benchMessage()), "mx.example.org", "spf=pass", None)
	if err != nil {
		b.Fatal(err)
	}
	msg := one.Header() + benchMessage()
	if r, _ := Verify(context.Background(), resolver, strings.NewReader(msg)); r.Status != Pass {
		b.Fatal(r)
	}
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		if _, err := ss["two"].Seal(strings.NewReader(msg), "mx.lists.example.net", "arc=pass", Pass); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerify: validating a 4 KiB message with a two-set chain
// (rsa-2048: three signatures), keys from memory.
func BenchmarkVerify(b *testing.B) {
	ss, records := hops(b)
	resolver := memZone(records)
	msg := benchMessage()
	for _, h := range []string{"one", "two"} {
		r, err := Verify(context.Background(), resolver, strings.NewReader(msg))
		if err != nil {
			b.Fatal(err)
		}
		s, err := ss[h].Seal(strings.NewReader(msg), "mx."+ss[h].Domain, "arc="+string(r.Status), r.Status)
		if err != nil {
			b.Fatal(err)
		}
		msg = s.Header() + msg
	}
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		r, err := Verify(context.Background(), resolver, strings.NewReader(msg))
		if err != nil || r.Status != Pass {
			b.Fatal(r, err)
		}
	}
}
