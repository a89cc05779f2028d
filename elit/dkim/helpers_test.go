package dkim

import (
	"crypto"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"elit.local/elit/dns"
	"elit.local/elit/internal/testlib"
)

const oracleDir = "../../../shared/oracles"

// crlf turns LF line ends into CRLF (fixtures are kept with LF).
func crlf(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "\r\n", "\n"), "\n", "\r\n")
}

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func loadKey(t testing.TB, name string) crypto.Signer {
	t.Helper()
	k, err := ParsePrivateKey(readFile(t, filepath.Join("testdata", name)))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// record returns the DNS record publishing key.
func record(t testing.TB, key crypto.Signer) string {
	t.Helper()
	r, err := KeyRecord(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// zone is an in-memory resolver with TXT records by name.
func zone(records map[string]string) *dns.Mem {
	m := &dns.Mem{TXTs: map[string][]string{}}
	for name, txt := range records {
		m.TXTs[strings.ToLower(name)] = []string{txt}
	}
	return m
}

func fixed(t time.Time) func() time.Time { return func() time.Time { return t } }

// python runs script with Debian's python3 (python3-dkim, python3-nacl).
func python(t testing.TB, script string, input any) string {
	t.Helper()
	return testlib.Python(t, []string{"dkim", "nacl"}, "python3-dkim (and python3-nacl with it)", script, input)
}

// pyDNS is the Python side of a test's DNS.
const pyDNS = testlib.PyDKIMDNS

func unixTime(sec int64) time.Time { return time.Unix(sec, 0).UTC() }
