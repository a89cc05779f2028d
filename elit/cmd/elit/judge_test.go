package main

import (
	"encoding/json"
	"net"
	"regexp"
	"strings"
	"testing"

	"elit.local/elit/internal/testlib"
)

// keyRe finds the DKIM record the server logs when it makes its key.
var keyRe = regexp.MustCompile(`msg="made a DKIM key: publish its record" name=(\S+) record="([^"]+)"`)

// TestJudgeSignedAndSealed: what Elit signs and seals, caught at the
// destination (smtp-sink), verifies with dkimpy, the outside judge: a
// message our user submits (DKIM, d=example.org), and one the MX forwards
// to the user's mailbox elsewhere (ARC cv=pass, and our DKIM signature).
func TestJudgeSignedAndSealed(t *testing.T) {
	sk := startSink(t, "")
	_, port, _ := net.SplitHostPort(sk.Addr)
	resolver := dnsServer(t, map[string]string{"example.com": "127.0.0.1", "example.net": "127.0.0.1"})
	s := deliveryServer(t, resolver, port)
	needTools(t, "swaks")
	waitLog(t, s, "made a DKIM key")
	k := keyRe.FindStringSubmatch(s.logText())
	if k == nil {
		t.Fatalf("no key in the log:\n%s", s.logText())
	}
	records := map[string]string{k[1]: strings.ReplaceAll(k[2], `\"`, `"`)}

	if code, out := s.swaks(s.sub, "--tls", "--auth", "PLAIN", "--auth-user", "din", "--auth-password", dinPassword,
		"--from", "din@example.org", "--to", "x@example.net", "--header", "From: Din <din@example.org>"); code != 0 {
		t.Fatalf("submission: %d\n%s", code, out)
	}
	if code, out := s.swaks(s.mx, "--from", "sender@example.net", "--to", "din@example.org"); code != 0 {
		t.Fatalf("MX: %d\n%s", code, out)
	}
	waitFor(t, "two deliveries", func() bool { return len(sk.messages()) == 2 })
	for _, m := range sk.messages() {
		forwarded := strings.Contains(m, "X-Rcpt-Args: <romain@example.com>")
		got := judge(t, m, records)
		if !got.DKIM {
			t.Errorf("dkimpy: our DKIM signature does not verify:\n%s", m)
		}
		if forwarded && got.ARC != "pass" {
			t.Errorf("dkimpy: ARC cv=%s:\n%s", got.ARC, m)
		}
		if !forwarded && got.ARC != "none" {
			t.Errorf("a submitted message has ARC (cv=%s):\n%s", got.ARC, m)
		}
	}
}

type verdict struct {
	DKIM bool   `json:"dkim"`
	ARC  string `json:"arc"`
}

// judge asks dkimpy about a message from the sink (its envelope lines on
// top are header fields too, signed by no one).
func judge(t *testing.T, msg string, records map[string]string) verdict {
	t.Helper()
	msg = strings.ReplaceAll(strings.ReplaceAll(msg, "\r\n", "\n"), "\n", "\r\n")
	out := testlib.Python(t, []string{"dkim", "authres"}, "python3-dkim and python3-authheaders", testlib.PyDKIMDNS+`
msg = inp['msg'].encode()
cv, results, comment = dkim.arc_verify(msg, dnsfunc=dnsfunc)
cv = cv.decode() if isinstance(cv, bytes) else str(cv)
print(json.dumps({'dkim': dkim.verify(msg, dnsfunc=dnsfunc), 'arc': cv}))
`, map[string]any{"msg": msg, "dns": records})
	var v verdict
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("dkimpy said %q: %v", out, err)
	}
	return v
}
