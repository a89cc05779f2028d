package arc

import (
	"context"
	"strings"
	"testing"
)

// FuzzVerify: Verify takes any message without panicking, and a pass
// means a sound chain.
func FuzzVerify(f *testing.F) {
	ss, records := hops(f)
	resolver := memZone(records)
	// Small seeds (Ed25519 seals, a short message) keep the fuzzer's
	// minimizing of interesting inputs short.
	msg := "From: a@example.com\r\nTo: b@example.org\r\n\r\nhi\r\n"
	for _, h := range []string{"ed", "ed"} {
		r, err := Verify(context.Background(), resolver, strings.NewReader(msg))
		if err != nil {
			f.Fatal(err)
		}
		s, err := ss[h].Seal(strings.NewReader(msg), "mx."+ss[h].Domain, "arc="+string(r.Status), r.Status)
		if err != nil {
			f.Fatal(err)
		}
		msg = s.Header() + msg
		f.Add([]byte(msg))
	}
	f.Add([]byte(strings.Replace(msg, "\r\nhi", "\r\nho", 1)))
	f.Add([]byte(set("1", "i=1; mx; none") + "\r\nbody"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, msg []byte) {
		res, err := (&Verifier{Resolver: resolver, OldestPass: true}).Verify(context.Background(), strings.NewReader(string(msg)))
		if err != nil {
			return
		}
		switch res.Status {
		case None:
			if res.Sets != 0 {
				t.Fatalf("%+v", res)
			}
		case Pass:
			if res.Err != nil || res.Sets < 1 || len(res.Seals) != res.Sets || res.OldestPass < 1 || res.OldestPass > res.Sets {
				t.Fatalf("%+v", res)
			}
		case Fail:
			if res.Err == nil {
				t.Fatalf("fail without a reason: %+v", res)
			}
		default:
			t.Fatalf("%+v", res)
		}
	})
}
