package mtasts

import (
	"net"
	"net/http"
	"strings"
)

// WellKnownPath is where a policy is served (§3.2, RFC 8615).
const WellKnownPath = "/.well-known/mta-sts.txt"

// Handler serves pol for our domains (issue 13, "Publish our own"): a
// GET or HEAD of WellKnownPath with Host mta-sts.<one of domains> (a
// port, a final dot and case do not matter; domains in U-labels are
// taken in A-labels) gets the policy as text/plain; anything else gets
// 404. It is meant for the HTTPS server whose certificate is valid for
// those mta-sts. names (§3.3).
func Handler(pol Policy, domains ...string) http.Handler {
	hosts := map[string]bool{}
	for _, d := range domains {
		if a, err := normalizeDomain(d); err == nil {
			hosts["mta-sts."+a] = true
		}
	}
	body := pol.String()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		host = strings.TrimSuffix(strings.ToLower(host), ".")
		if !hosts[host] || r.URL.Path != WellKnownPath || r.Method != http.MethodGet && r.Method != http.MethodHead {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=us-ascii")
		w.Header().Set("Cache-Control", "no-store") // §3.3: senders use no HTTP cache; nor should one between
		if r.Method == http.MethodHead {
			return
		}
		w.Write([]byte(body))
	})
}

// DNSRecord is a DNS record to publish, in the form elit/records lists
// them.
type DNSRecord struct {
	Name  string // owner name, absolute, with the final dot
	Type  string
	Value string // as in a zone file
	Why   string
}

// Records returns the DNS records that publish pol for domain, served by
// the host hostname (which serves Handler on port 443 with a certificate
// valid for mta-sts.<domain>): the TXT record _mta-sts.<domain> with the
// policy's id (§3.1), which changes when the policy does, and the policy
// host mta-sts.<domain> as an alias of hostname (§3.3).
func Records(domain, hostname string, pol Policy) []DNSRecord {
	domain = strings.TrimSuffix(domain, ".")
	hostname = strings.TrimSuffix(hostname, ".")
	return []DNSRecord{
		{"_mta-sts." + domain + ".", "TXT", `"` + Record{ID: pol.ID()}.String() + `"`,
			"MTA-STS (RFC 8461): senders fetch our policy (mode " + string(pol.Mode) + "); the id changes with the policy"},
		{"mta-sts." + domain + ".", "CNAME", hostname + ".",
			"MTA-STS policy host (or A/AAAA records of this server); its HTTPS certificate must be valid for mta-sts." + domain},
	}
}
