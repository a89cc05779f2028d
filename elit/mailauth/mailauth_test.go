package mailauth

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/netip"
	"strings"
	"testing"
	"time"

	"elit.local/elit/arc"
	"elit.local/elit/decide"
	"elit.local/elit/dkim"
	"elit.local/elit/dns"
	"elit.local/elit/reply"
)

// world is the DNS of the tests: sender.example signs with DKIM (key
// s1), allows 192.0.2.1 by SPF, and publishes a DMARC policy; our own
// domain example.org publishes its keys.
type world struct {
	dns    *dns.Mem
	sender *dkim.Signer // sender.example's
	keys   *Keys        // ours
}

const clientIP = "192.0.2.1"

func newWorld(t testing.TB, dmarcRecord string) *world {
	t.Helper()
	pem, record, err := dkim.GenerateKey("ed25519", 0)
	if err != nil {
		t.Fatal(err)
	}
	key, err := dkim.ParsePrivateKey(pem)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := LoadKeys(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ours, err := keys.Generate("example.org", "ours", "rsa", 1024)
	if err != nil {
		t.Fatal(err)
	}
	w := &world{
		dns: &dns.Mem{
			TXTs: map[string][]string{
				"sender.example":               {"v=spf1 ip4:192.0.2.1 -all"},
				"s1._domainkey.sender.example": {record},
				"ours._domainkey.example.org":  {ours.Record},
				"other.example":                {"v=spf1 -all"},
				"_dmarc.other.example":         {"v=DMARC1; p=quarantine"},
				"_dmarc.quarantine.example":    {"v=DMARC1; p=quarantine"},
				"_dmarc.nopolicy.example":      {"v=DMARC1; p=none"},
				"mail.sender.example":          {"v=spf1 a -all"},
			},
			Addrs: map[string][]netip.Addr{"mail.sender.example": {netip.MustParseAddr(clientIP)}},
			PTRs:  map[string][]string{dns.ReverseName(netip.MustParseAddr(clientIP)): {"mail.sender.example"}},
		},
		sender: &dkim.Signer{Domain: "sender.example", Selector: "s1", Key: key},
		keys:   keys,
	}
	if dmarcRecord != "" {
		w.dns.TXTs["_dmarc.sender.example"] = []string{dmarcRecord}
	}
	return w
}

func (w *world) step() *Step {
	return &Step{Resolver: w.dns, Keys: w.keys, AuthServID: "mx.example.org", Domain: "example.org",
		Local: func(d string) bool { return d == "example.org" }, Check: true, Reject: true, Seal: true, Sign: true,
		rand: func(int) int { return 0 }}
}

func message(from string, extra string) string {
	return "From: " + from + "\r\nTo: din@example.org\r\nSubject: hello\r\nDate: Wed, 02 Dec 2026 12:00:00 +0000\r\n" +
		"Message-ID: <1@sender.example>\r\n" + extra + "\r\nHi.\r\n"
}

// run runs the step at the end of DATA on msg, as the MX received it from
// clientIP with MAIL FROM mailFrom, to recipients.
func run(t testing.TB, s *Step, user, mailFrom, msg string, recipients ...string) (*decide.Transaction, error) {
	t.Helper()
	sess := &decide.Session{Listener: "mx", Client: netip.MustParseAddr(clientIP), Helo: "mail.sender.example", User: user}
	tx := decide.NewTransaction(sess, mailFrom, decide.Params{})
	for _, r := range recipients {
		tx.Route(&decide.Rcpt{Address: r}, "", r)
	}
	m := &decide.Message{Header: header(t, msg), Size: int64(len(msg)), Open: func() io.Reader { return strings.NewReader(msg) }}
	return tx, s.Data(context.Background(), tx, m)
}

// header parses msg's header as the receiver's scanner does.
func header(t testing.TB, msg string) []decide.Field {
	t.Helper()
	h, _, err := dkim.ParseHeader([]byte(msg))
	if err != nil {
		t.Fatal(err)
	}
	var out []decide.Field
	for _, f := range h {
		out = append(out, decide.Field{Name: f.Name, Value: strings.ReplaceAll(string(f.Value()), "\r\n", "")})
	}
	return out
}

func signed(t *testing.T, s *dkim.Signer, msg string) string {
	t.Helper()
	sig, err := s.Sign(strings.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	return sig + msg
}

func code(err error) string {
	if err == nil {
		return "accepted"
	}
	if r, ok := reply.As(err); ok {
		return r.Error()[:9]
	}
	return err.Error()
}

func TestCheck(t *testing.T) {
	for _, c := range []struct {
		name, dmarc string
		reject      bool
		from, msg   string // MAIL FROM, message (signed when sign)
		sign        bool
		failTXT     string // a name whose TXT lookups fail temporarily
		want        string // accepted or the reply code
		results     []string
		marked      bool
	}{
		{name: "aligned dkim and spf", dmarc: "v=DMARC1; p=reject", reject: true, from: "a@sender.example", msg: message("a@sender.example", ""), sign: true,
			want: "accepted", results: []string{"spf=pass", "dkim=pass", "header.d=sender.example", "dmarc=pass", "iprev=pass", "arc=none"}},
		{name: "forged, p=reject", dmarc: "v=DMARC1; p=reject", reject: true, from: "x@other.example", msg: message("boss@sender.example", ""),
			want: "550 5.7.1"},
		{name: "forged, p=reject, not applied", dmarc: "v=DMARC1; p=reject", from: "x@other.example", msg: message("boss@sender.example", ""),
			want: "accepted", results: []string{"dmarc=fail", "spf=fail"}, marked: true},
		{name: "quarantine", from: "x@other.example", msg: message("boss@quarantine.example", ""), reject: true,
			want: "accepted", results: []string{"dmarc=fail", "header.from=quarantine.example"}, marked: true},
		{name: "no record", from: "x@other.example", msg: message("a@norecord.example", ""), reject: true,
			want: "accepted", results: []string{"dmarc=none"}},
		{name: "dmarc lookup fails", from: "x@other.example", msg: message("a@sender.example", ""), reject: true, failTXT: "_dmarc.sender.example",
			want: "451 4.7.0"},
		{name: "two From addresses", from: "x@other.example", msg: message("a@sender.example, b@other.example", ""), reject: true,
			want: "accepted", results: []string{"dmarc=permerror"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := newWorld(t, c.dmarc)
			if c.failTXT != "" {
				w.dns.Fail = map[string]error{c.failTXT + " TXT": errors.New("timeout")}
			}
			s := w.step()
			s.Reject = c.reject
			msg := c.msg
			if c.sign {
				msg = signed(t, w.sender, msg)
			}
			tx, err := run(t, s, "", c.from, msg, "r@example.com")
			if code(err) != c.want {
				t.Fatalf("got %v, want %s", err, c.want)
			}
			if err != nil {
				return
			}
			all := strings.Join(tx.Fields, "")
			ar := all[strings.Index(all, "Authentication-Results: mx.example.org;"):]
			for _, r := range c.results {
				if !strings.Contains(ar, r) {
					t.Errorf("no %q in\n%s", r, ar)
				}
			}
			if strings.Contains(all, "X-Spam-Flag: YES") != c.marked {
				t.Errorf("marked %v:\n%s", !c.marked, all)
			}
		})
	}
}

// TestForward: mail the MX forwards elsewhere leaves sealed and signed as
// our domain, and both verify; mail for local mailboxes only does not.
func TestForward(t *testing.T) {
	w := newWorld(t, "v=DMARC1; p=reject")
	msg := signed(t, w.sender, message("a@sender.example", ""))
	tx, err := run(t, w.step(), "", "a@sender.example", msg, "r@example.com")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range tx.Fields {
		name, _, _ := strings.Cut(f, ":")
		names = append(names, name)
	}
	want := "DKIM-Signature ARC-Seal ARC-Message-Signature ARC-Authentication-Results Authentication-Results"
	if strings.Join(names, " ") != want {
		t.Fatalf("fields %q, want %s", names, want)
	}
	out := strings.Join(tx.Fields, "") + msg
	chain, err := arc.Verify(context.Background(), w.dns, strings.NewReader(out))
	if err != nil || chain.Status != arc.Pass || chain.Sets != 1 {
		t.Errorf("arc: %+v %v", chain, err)
	}
	sigs, err := dkim.Verify(context.Background(), w.dns, strings.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	pass := map[string]bool{}
	for _, r := range sigs {
		pass[r.Domain] = r.Status == dkim.Pass
	}
	if !pass["example.org"] || !pass["sender.example"] {
		t.Errorf("dkim: %+v", sigs)
	}

	tx, err = run(t, w.step(), "", "a@sender.example", msg, "din@example.org")
	if err != nil || len(tx.Fields) != 1 || !strings.HasPrefix(tx.Fields[0], "Authentication-Results:") {
		t.Errorf("local only: %q %v", tx.Fields, err)
	}
}

// TestForgedResults: an Authentication-Results field with our authserv-id
// comes from outside and goes.
func TestForgedResults(t *testing.T) {
	w := newWorld(t, "")
	msg := message("a@sender.example", "Authentication-Results: mx.example.org; dmarc=pass header.from=sender.example\r\n"+
		"Authentication-Results: other.example; spf=pass\r\n")
	tx, err := run(t, w.step(), "", "a@sender.example", msg, "din@example.org")
	if err != nil {
		t.Fatal(err)
	}
	if rm := tx.Removed(); len(rm) != 1 || rm[0] != 5 {
		t.Errorf("removed %v", rm)
	}
}

// TestSign: submitted mail is signed with the keys of its From domain;
// notices with ours.
func TestSign(t *testing.T) {
	w := newWorld(t, "")
	if _, err := w.keys.Generate("example.org", "ed", "ed25519", 0); err != nil {
		t.Fatal(err)
	}
	w.dns.TXTs["ed._domainkey.example.org"] = []string{w.keys.For("example.org")[0].Record}
	for _, k := range w.keys.For("example.org") {
		w.dns.TXTs[k.RecordName()] = []string{k.Record}
	}
	msg := message("din@example.org", "")
	tx, err := run(t, w.step(), "din", "din@example.org", msg, "x@elsewhere.example")
	if err != nil || len(tx.Fields) != 2 {
		t.Fatalf("%q %v", tx.Fields, err)
	}
	sigs, err := dkim.Verify(context.Background(), w.dns, strings.NewReader(strings.Join(tx.Fields, "")+msg))
	if err != nil || len(sigs) != 2 || sigs[0].Status != dkim.Pass || sigs[1].Status != dkim.Pass {
		t.Errorf("%+v %v", sigs, err)
	}
	notice := []byte("From: MAILER-DAEMON@mx.example.org\r\nTo: a@sender.example\r\nSubject: failed\r\n\r\nSorry.\r\n")
	h, err := w.step().SignNotice(notice)
	if err != nil || strings.Count(h, "DKIM-Signature:") != 2 {
		t.Fatalf("%q %v", h, err)
	}
	sigs, _ = dkim.Verify(context.Background(), w.dns, bytes.NewReader(append([]byte(h), notice...)))
	if len(sigs) != 2 || sigs[0].Status != dkim.Pass {
		t.Errorf("notice: %+v", sigs)
	}
}

func TestKeys(t *testing.T) {
	dir := t.TempDir()
	keys, err := LoadKeys(dir)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)
	made, err := keys.Ensure("Bücher.example", []string{"rsa", "ed25519"}, now)
	if err != nil || len(made) != 2 || made[0].Selector != "elit202612r" || made[1].Selector != "elit202612e" {
		t.Fatalf("%+v %v", made, err)
	}
	if again, err := keys.Ensure("xn--bcher-kva.example", []string{"rsa"}, now); err != nil || len(again) != 0 {
		t.Errorf("made again: %+v %v", again, err)
	}
	if _, err := keys.Generate("bücher.example", "elit202612r", "rsa", 0); !errors.Is(err, ErrExists) {
		t.Errorf("replaced a key: %v", err)
	}
	for _, bad := range []string{"", "a b", "-x", "a..b", "ü"} {
		if _, err := keys.Generate("example.org", bad, "rsa", 0); err == nil {
			t.Errorf("selector %q accepted", bad)
		}
	}
	reloaded, err := LoadKeys(dir)
	if err != nil || len(reloaded.All()) != 2 || len(reloaded.For("bücher.example")) != 2 {
		t.Errorf("reloaded %d keys: %v", len(reloaded.All()), err)
	}
}
