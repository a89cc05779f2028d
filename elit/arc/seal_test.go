package arc

import (
	"bytes"
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"

	"elit.local/elit/dkim"
	"elit.local/elit/dns"
	"elit.local/elit/internal/testlib"
)

const testMessage = "DKIM-Signature: v=1; a=rsa-sha256; d=example.com; s=x; h=from; bh=AAAA; b=AAAA\r\n" +
	"From: Din <din@example.com>\r\n" +
	"To: team@example.org\r\n" +
	"Subject: Is dinner ready?\r\n" +
	"Date: Fri, 11 Jul 2003 21:00:37 -0700\r\n" +
	"Message-ID: <20030712040037.46341.5F8J@example.com>\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: text/plain\r\n" +
	"\r\n" +
	"Hi.\r\n\r\nWe lost the game.  Are you hungry yet?\r\n"

func loadKey(t testing.TB, file string) crypto.Signer {
	t.Helper()
	b, err := os.ReadFile("testdata/" + file)
	if err != nil {
		t.Fatal(err)
	}
	k, err := dkim.ParsePrivateKey(b)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// hops are the sealers of the tests: two forwarders with RSA keys (what
// other verifiers know), and one with Ed25519.
func hops(t testing.TB) (map[string]*Sealer, map[string]string) {
	rsaKey, edKey := loadKey(t, "rsa2048.pem"), loadKey(t, "ed25519.pem")
	rec := func(k crypto.Signer) string {
		r, err := dkim.KeyRecord(k.Public())
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	return map[string]*Sealer{
			"one": {Domain: "example.org", Selector: "arc", Key: rsaKey},
			"two": {Domain: "lists.example.net", Selector: "2026", Key: rsaKey},
			"ed":  {Domain: "example.org", Selector: "ed", Key: edKey},
		}, map[string]string{
			"arc._domainkey.example.org":        rec(rsaKey),
			"2026._domainkey.lists.example.net": rec(rsaKey),
			"ed._domainkey.example.org":         rec(edKey),
		}
}

func memZone(records map[string]string) *dns.Mem {
	m := &dns.Mem{TXTs: map[string][]string{}}
	for k, v := range records {
		m.TXTs[k] = []string{v}
	}
	return m
}

// hop verifies msg as a forwarder would, seals it with s, and returns the
// message with the new set on top.
func hop(t *testing.T, s *Sealer, resolver dkim.TXTResolver, msg string) string {
	t.Helper()
	res, err := Verify(context.Background(), resolver, strings.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	results := "arc=" + string(res.Status) + "; spf=pass smtp.mailfrom=example.com; dkim=pass header.d=example.com header.s=x header.b=AAAA; dmarc=pass header.from=example.com"
	sealed, err := s.Seal(strings.NewReader(msg), "mx."+s.Domain, results, res.Status)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSuffix(sealed.Header(), "\r\n"), "\r\n") {
		if len(line) > dkim.MaxLineLength {
			t.Errorf("line of %d characters: %q", len(line), line)
		}
	}
	return sealed.Header() + msg
}

// TestSealVerify: chains we seal verify with our verifier, hop after hop,
// with RSA and Ed25519 keys; changing the message breaks them.
func TestSealVerify(t *testing.T) {
	ss, records := hops(t)
	resolver := memZone(records)
	v := &Verifier{Resolver: resolver, OldestPass: true}
	check := func(msg string, want Status, sets, oldest int) {
		t.Helper()
		res, err := v.Verify(context.Background(), strings.NewReader(msg))
		if err != nil {
			t.Fatal(err)
		}
		if res.Status != want || res.Sets != sets || res.OldestPass != oldest {
			t.Errorf("%s (%v) %d sets, oldest pass %d; want %s %d %d\n%s", res.Status, res.Err, res.Sets, res.OldestPass, want, sets, oldest, msg)
		}
	}
	check(testMessage, None, 0, 0)
	one := hop(t, ss["one"], resolver, testMessage)
	check(one, Pass, 1, 1)
	two := hop(t, ss["two"], resolver, one)
	check(two, Pass, 2, 1)
	three := hop(t, ss["ed"], resolver, two)
	check(three, Pass, 3, 1)
	// A body changed between hop 1 and hop 2: hop 2 finds the chain
	// broken and seals it with cv=fail, which fails from then on.
	changed := hop(t, ss["two"], resolver, strings.Replace(one, "hungry", "thirsty", 1))
	check(changed, Fail, 2, 0)
	// Changes after the last hop.
	check(strings.Replace(two, "hungry", "thirsty", 1), Fail, 2, 0)
	check(strings.Replace(two, "Subject: Is", "Subject: Was", 1), Fail, 2, 0)
	check(strings.Replace(two, "i=1; mx.example.org", "i=1; mx.example.com", 1), Fail, 2, 0)
	// Removing the newest set leaves a chain that passes.
	_, rest, _ := strings.Cut(two, "ARC-Authentication-Results: i=2")
	_, rest, _ = strings.Cut(rest, "\r\nARC-Seal: i=1")
	check("ARC-Seal: i=1"+rest, Pass, 1, 1)
}

// TestSealFailedChain: a chain that arrives broken is sealed with cv=fail
// over our set alone (RFC 8617 §5.1.2), which verifies as fail; after that
// no set is added.
func TestSealFailedChain(t *testing.T) {
	ss, records := hops(t)
	resolver := memZone(records)
	one := hop(t, ss["one"], resolver, testMessage)
	broken := strings.Replace(one, "hungry", "thirsty", 1)
	sealed, err := ss["two"].Seal(strings.NewReader(broken), "mx.lists.example.net", "arc=fail", Fail)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(sealed.Seal, "cv=fail") || sealed.Instance != 2 {
		t.Fatalf("%s", sealed.Header())
	}
	msg := sealed.Header() + broken
	res, err := Verify(context.Background(), resolver, strings.NewReader(msg))
	if err != nil || res.Status != Fail {
		t.Errorf("%+v %v", res, err)
	}
	// The seal covers our set alone: it verifies over AAR and AMS of i=2.
	hdr, _, _ := dkim.ParseHeader([]byte(msg))
	sets, _, err := ParseSets(hdr)
	if err != nil {
		t.Fatal(err)
	}
	as, err := parseSeal(sets[1].AS.Value())
	if err != nil {
		t.Fatal(err)
	}
	kc := keyCache{resolver: resolver}
	if err := kc.verifySeal(context.Background(), sets[1:], as); err != nil {
		t.Errorf("cv=fail seal over its own set: %v", err)
	}
	if _, err := ss["one"].Seal(strings.NewReader(msg), "mx.example.org", "arc=fail", Fail); !errors.Is(err, ErrChainFailed) {
		t.Errorf("sealing after cv=fail: %v", err)
	}
}

func TestSealRefuses(t *testing.T) {
	ss, records := hops(t)
	one := hop(t, ss["one"], memZone(records), testMessage)
	good := *ss["one"]
	cases := []struct {
		name            string
		s               Sealer
		msg, id, result string
		chain           Status
	}{
		{"none with sets", good, one, "mx.example.org", "spf=pass", None},
		{"pass without sets", good, testMessage, "mx.example.org", "spf=pass", Pass},
		{"unknown status", good, testMessage, "mx.example.org", "spf=pass", "maybe"},
		{"bad authserv-id", good, testMessage, "mx example.org", "spf=pass", None},
		{"injection", good, testMessage, "mx.example.org", "spf=pass\r\nX-Evil: 1", None},
		{"bare LF", good, testMessage, "mx.example.org", "spf=pass\n x", None},
		{"signs ARC-Seal", Sealer{Domain: "example.org", Selector: "arc", Key: good.Key, Headers: []string{"From", "ARC-Seal"}}, testMessage, "mx.example.org", "", None},
		{"no key", Sealer{Domain: "example.org", Selector: "arc"}, testMessage, "mx.example.org", "", None},
		{"bad domain", Sealer{Domain: "example..org", Selector: "arc", Key: good.Key}, testMessage, "mx.example.org", "", None},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if s, err := c.s.Seal(strings.NewReader(c.msg), c.id, c.result, c.chain); err == nil {
				t.Errorf("sealed: %s", s.Header())
			}
		})
	}
	// Fifty sets are the most.
	msg := testMessage
	for i := 1; i <= MaxSets; i++ {
		msg = "ARC-Seal: i=" + strconv.Itoa(i) + "; cv=pass\r\nARC-Message-Signature: i=" + strconv.Itoa(i) + "\r\nARC-Authentication-Results: i=" + strconv.Itoa(i) + "; x\r\n" + msg
	}
	if _, err := good.Seal(strings.NewReader(msg), "mx.example.org", "", Fail); err == nil {
		t.Error("sealed a 51st set")
	}
}

// python runs script with Debian's python3: dkimpy's ARC needs
// python3-authres too, which comes with python3-authheaders.
func python(t testing.TB, script string, input any) string {
	t.Helper()
	return testlib.Python(t, []string{"dkim", "authres"}, "python3-dkim and python3-authheaders", script, input)
}

// TestDkimpyVerifiesOurSeals: the outside judge, dkimpy's ARC verifier,
// gives cv=pass to chains we seal, one hop and two (its ARC knows
// rsa-sha256 only); a chain we sealed as failed (cv=fail) it calls
// terminated (no status, as the draft it follows had it; RFC 8617 §5.2
// step 2 says fail, which is what ours gives).
func TestDkimpyVerifiesOurSeals(t *testing.T) {
	const script = `
import sys, json, base64, dkim
inp = json.load(sys.stdin)
records = {k.lower(): v for k, v in inp['dns'].items()}
def dnsfunc(name, timeout=5):
    n = name.decode() if isinstance(name, bytes) else name
    r = records.get(n.lower().rstrip('.'))
    return r.encode() if r is not None else None
cv, results, reason = dkim.ARC(base64.b64decode(inp['msg'])).verify(dnsfunc=dnsfunc)
print((cv or b'').decode(), '|', reason)
`
	ss, records := hops(t)
	resolver := memZone(records)
	one := hop(t, ss["one"], resolver, testMessage)
	two := hop(t, ss["two"], resolver, one)
	broken := hop(t, ss["two"], resolver, strings.Replace(one, "hungry", "thirsty", 1))
	for _, c := range []struct {
		name, msg, want string
	}{{"one hop", one, "pass"}, {"two hops", two, "pass"}, {"sealed as failed", broken, ""}} {
		t.Run(c.name, func(t *testing.T) {
			out := python(t, script, map[string]any{"msg": []byte(c.msg), "dns": records})
			cv, reason, _ := strings.Cut(out, " |")
			if cv != c.want || (c.want == "" && !strings.Contains(reason, "ARC-Seal[2] reported failure")) {
				t.Errorf("dkimpy: %s\n%s", out, c.msg)
			}
		})
	}
}

// TestOursVerifiesDkimpySeals: chains dkimpy seals verify with ours.
func TestOursVerifiesDkimpySeals(t *testing.T) {
	const script = `
import sys, json, base64, dkim
inp = json.load(sys.stdin)
msg = base64.b64decode(inp['msg'])
for d, s, cv in (('example.org', 'arc', 'none'), ('lists.example.net', '2026', 'pass')):
    srv = ('mx.' + d).encode()
    msg = b'Authentication-Results: ' + srv + b'; arc=' + cv.encode() + b'; spf=pass smtp.mailfrom=example.com\r\n' + msg
    fields = dkim.ARC(msg).sign(s.encode(), d.encode(), inp['key'].encode(), srv,
        include_headers=[b'from', b'to', b'subject', b'date', b'message-id'], timestamp=inp['t'])
    msg = b''.join(fields) + msg
sys.stdout.write(base64.b64encode(msg).decode())
`
	_, records := hops(t)
	key, err := os.ReadFile("testdata/rsa2048.pem")
	if err != nil {
		t.Fatal(err)
	}
	out := python(t, script, map[string]any{"msg": []byte(testMessage), "key": string(key), "t": 1_800_000_000})
	var msg []byte
	if err := json.Unmarshal([]byte(`"`+out+`"`), &msg); err != nil {
		t.Fatal(err)
	}
	res, err := (&Verifier{Resolver: memZone(records), OldestPass: true}).Verify(context.Background(), bytes.NewReader(msg))
	if err != nil || res.Status != Pass || res.Sets != 2 || res.OldestPass != 1 {
		t.Errorf("%+v %v\n%s", res, err, msg)
	}
}
