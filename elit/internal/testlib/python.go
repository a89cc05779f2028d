package testlib

import (
	"bytes"
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
)

// Python runs script with Debian's /usr/bin/python3, where the outside
// judges live (python3-dkim, -spf, -authheaders), with input as JSON on
// its standard input, and returns its standard output. The modules are
// imported first: a missing one fails the test, saying that make test
// installs packages.
func Python(t testing.TB, modules []string, packages, script string, input any) string {
	t.Helper()
	if len(modules) > 0 {
		if out, err := exec.Command("/usr/bin/python3", "-c", "import "+strings.Join(modules, ", ")).CombinedOutput(); err != nil {
			t.Fatalf("/usr/bin/python3 cannot import %s: make test installs %s (%v)\n%s", strings.Join(modules, ", "), packages, err, out)
		}
	}
	in, err := json.Marshal(input)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("/usr/bin/python3", "-c", script)
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("python: %v\n%s", err, stderr.String())
	}
	return string(out)
}

// PyDKIMDNS is the Python side of a test's DNS for dkimpy: dnsfunc
// answers the TXT records the test gives as "dns" in its input (name →
// record), nothing else, no resolver. Start a script with it.
const PyDKIMDNS = `
import sys, json, base64, dkim
inp = json.load(sys.stdin)
records = {k.lower().rstrip('.'): v for k, v in inp.get('dns', {}).items()}
def dnsfunc(name, timeout=5):
    n = name.decode() if isinstance(name, bytes) else name
    r = records.get(n.lower().rstrip('.'))
    return r.encode() if r is not None else None
`

// PyResolver points dnspython, and pyspf and authheaders through it, at
// the test's DNS server on 127.0.0.1 port: start a script with it, before
// those modules are imported.
func PyResolver(port string) string {
	return `
import json, sys
import dns.resolver
r = dns.resolver.Resolver(configure=False)
r.nameservers = ["127.0.0.1"]
r.port = ` + port + `
r.timeout = r.lifetime = 5
dns.resolver.default_resolver = r
`
}
