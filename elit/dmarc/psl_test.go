package dmarc

import (
	"bufio"
	"os"
	"regexp"
	"strings"
	"testing"
)

// pslTests are the Public Suffix List project's algorithm tests.
const pslTests = "../../../shared/oracles/psl/test_psl.txt"

// pslNewer are the lines of test_psl.txt whose answer differs with the
// list in golang.org/x/net, which is newer than the 2023 one the tests
// were written for, with the reason. The test fails when one of them no
// longer differs, or another line does. None differs today.
var pslNewer = map[string]string{}

// TestPSL: our organizational domain's registrable part agrees with the
// PSL's own tests (checkPublicSuffix(input, registrable or null)).
func TestPSL(t *testing.T) {
	f, err := os.Open(pslTests)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	line := regexp.MustCompile(`^checkPublicSuffix\((null|'[^']*'), (null|'[^']*')\);`)
	unquote := func(s string) (string, bool) {
		if s == "null" {
			return "", false
		}
		return strings.Trim(s, "'"), true
	}
	n, off := 0, 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		text := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(text, "//checkPublicSuffix(") {
			off++ // turned off by the PSL project: .local left the list
			continue
		}
		m := line.FindStringSubmatch(text)
		if m == nil {
			continue
		}
		n++
		in, _ := unquote(m[1])
		want, wantOK := unquote(m[2])
		got, ok := registrable(in)
		differs := got != want || ok != wantOK
		reason, listed := pslNewer[m[0]]
		switch {
		case differs && !listed:
			t.Errorf("%s: got %q (%v)", m[0], got, ok)
		case !differs && listed:
			t.Errorf("%s: listed as differing (%s) but agrees", m[0], reason)
		case differs:
			t.Logf("%s: got %q: %s", m[0], got, reason)
		}
		if ok && OrgDomain(in) != got {
			t.Errorf("OrgDomain(%q) = %q, want %q", in, OrgDomain(in), got)
		}
	}
	if n != 78 || off != 4 {
		t.Errorf("read %d tests and %d turned off, the file has 78 and 4", n, off)
	}
}
