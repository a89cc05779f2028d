package mailauth

import (
	"strings"
	"testing"
)

// BenchmarkForward is the work of the step on a 4 KiB message the MX
// forwards: the checks (resolver in memory), the ARC seal and our DKIM
// signature, with an rsa-2048 key.
func BenchmarkForward(b *testing.B) {
	for _, c := range []struct {
		name        string
		check, seal bool
	}{{"check", true, false}, {"seal+sign", false, true}, {"all", true, true}} {
		b.Run(c.name, func(b *testing.B) {
			w := newWorld(b, "v=DMARC1; p=none")
			keys, err := LoadKeys(b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			if _, err := keys.Generate("example.org", "big", "rsa", 2048); err != nil {
				b.Fatal(err)
			}
			w.keys = keys
			s := w.step()
			s.Check, s.Seal, s.Sign = c.check, c.seal, c.seal
			msg := message("a@other.example", "") + strings.Repeat("x", 4000) + "\r\n"
			b.ResetTimer()
			for range b.N {
				if _, err := run(b, s, "", "a@other.example", msg, "r@example.com"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
