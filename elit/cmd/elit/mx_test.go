package main

import (
	"io"
	"slices"
	"strings"
	"testing"
)

// TestServeSendAs: MAIL FROM and header From must be the user's own
// address or a list it is in.
func TestServeSendAs(t *testing.T) {
	needTools(t, "swaks")
	s := startServer(t)
	send := func(from, header string) (int, string) {
		return s.swaks(s.subs, "--tls-on-connect", "--auth", "PLAIN", "--auth-user", "din", "--auth-password", dinPassword,
			"--from", from, "--to", "x@example.net", "--header", "From: "+header)
	}
	if code, out := send("bob@example.org", "bob@example.org"); code == 0 || !strings.Contains(out, "550 5.7.1") {
		t.Errorf("MAIL FROM another user: exit %d\n%s", code, out)
	}
	if code, out := send("din@example.org", "Bob <bob@example.org>"); code == 0 || !strings.Contains(out, "550 5.7.1") || len(queued(out)) != 0 {
		t.Errorf("header From another user: exit %d\n%s", code, out)
	}
	if code, out := send("team@example.org", "The team <team@example.org>"); code != 0 {
		t.Errorf("as a list din is in: exit %d\n%s", code, out)
	}
	if code, out := send("DIN@Example.ORG", "=?utf-8?q?D=C3=AEn?= <din@example.org>"); code != 0 {
		t.Errorf("own address, other case, encoded name: exit %d\n%s", code, out)
	}
	if code, out := send("<>", "din@example.org"); code == 0 {
		t.Errorf("null sender on submission: exit %d\n%s", code, out)
	}
}

// TestServeMX: no open relay; unknown users refused at RCPT; a list is
// expanded in the queue; postmaster always accepted.
func TestServeMX(t *testing.T) {
	needTools(t, "swaks")
	s := startServer(t, "-postmaster", "din@example.org")
	code, out := s.swaks(s.mx, "--from", "x@example.net", "--to", "someone@elsewhere.example")
	if code == 0 || !strings.Contains(out, "554 5.7.1") {
		t.Errorf("relay: exit %d\n%s", code, out)
	}
	code, out = s.swaks(s.mx, "--from", "x@example.net", "--to", "nobody@example.org")
	if code == 0 || !strings.Contains(out, "550 5.1.1") || strings.Contains(out, "354") {
		t.Errorf("unknown user: exit %d\n%s", code, out)
	}
	code, out = s.swaks(s.mx, "--tls", "--from", "x@example.net", "--to", "team@example.org")
	ids := queued(out)
	if code != 0 || len(ids) != 1 {
		t.Fatalf("to a list: exit %d\n%s", code, out)
	}
	q := openQueue(t, s)
	m, err := q.Get(ids[0])
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range m.Recipients {
		got = append(got, r.Address+"<"+r.Original)
	}
	want := []string{"romain@example.com<team@example.org", "hannes@example.net<team@example.org"}
	if !slices.Equal(got, want) {
		t.Errorf("recipients %q, want %q", got, want)
	}
	f, _ := q.Data(ids[0])
	data, _ := io.ReadAll(f)
	f.Close()
	// Above our Received field, what the checks and the forward add: our
	// DKIM signature, the ARC set of this hop, Authentication-Results.
	head, _, _ := strings.Cut(string(data), "\r\n\r\n")
	var names []string
	for _, line := range strings.Split(head, "\r\n") {
		if name, _, ok := strings.Cut(line, ":"); ok && line[0] != ' ' && line[0] != '\t' {
			names = append(names, name)
		}
	}
	if want := []string{"DKIM-Signature", "ARC-Seal", "ARC-Message-Signature", "ARC-Authentication-Results", "Authentication-Results", "Received"}; len(names) < len(want) || !slices.Equal(names[:len(want)], want) {
		t.Errorf("header fields %q, want %q first", names, want)
	}
	if !strings.Contains(head, "Authentication-Results: mx.example.org;") ||
		!strings.Contains(head, "Received: from client.example.net ([127.0.0.1])\r\n\tby mx.example.org (Elit) with ESMTPS id "+ids[0]) ||
		!strings.Contains(head, "for <team@example.org>;") {
		t.Errorf("header:\n%s", head)
	}
	// go-smtp's parser refuses the bare <Postmaster> of RFC 5321 §4.1.1.3
	// before we see it; the qualified forms work.
	for _, to := range []string{"postmaster@example.org", "PostMaster@example.org"} {
		code, out = s.swaks(s.mx, "--from", "", "--to", to)
		ids = queued(out)
		if code != 0 || len(ids) != 1 {
			t.Fatalf("to %s: exit %d\n%s", to, code, out)
		}
		m, _ := q.Get(ids[0])
		if len(m.Recipients) != 1 || m.Recipients[0].Address != "romain@example.com" {
			t.Errorf("postmaster went to %+v", m.Recipients)
		}
	}
}
