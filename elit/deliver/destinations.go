package deliver

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/google/renameio/v2"

	"elit.local/elit/metrics"
)

// Destinations remembers, per destination domain, what its mail servers
// offered at our last sessions: STARTTLS (RFC 3207) and, inside TLS,
// REQUIRETLS (RFC 8689). A host that offered STARTTLS before and offers
// none now is a sign of a downgrade (an attacker on the path stripping
// STARTTLS, RFC 3207 §6 and RFC 8461 §1) or of a broken server: it is
// logged as a warning and counted. The memory is a hint only, as mox
// keeps it: the TLS a message needs comes from its TLS policy and its
// REQUIRETLS, never from what a server offered before.
//
// It is kept in memory and written to a JSON file (Save: the server
// calls it every minute and at the end); at most Max domains, the least recently seen
// forgotten first.
type Destinations struct {
	path string
	max  int

	mu    sync.Mutex
	m     map[string]*DestinationTLS
	dirty bool
}

// DestinationTLS is what one destination domain's servers offered.
type DestinationTLS struct {
	Domain string `json:"domain"` // in A-labels
	// Host is the mail exchanger of the last session, and STARTTLS and
	// REQUIRETLS what it offered (REQUIRETLS: inside TLS).
	Host       string    `json:"host"`
	STARTTLS   bool      `json:"starttls"`
	REQUIRETLS bool      `json:"requiretls"`
	Updated    time.Time `json:"updated"`
	// TLSHosts are the domain's hosts seen offering STARTTLS (the last
	// maxTLSHosts); Downgrades counts the sessions where one of them did
	// not, and LastDowngrade is the last such session.
	TLSHosts      []string  `json:"tls_hosts,omitempty"`
	Downgrades    int       `json:"downgrades,omitempty"`
	LastDowngrade time.Time `json:"last_downgrade,omitzero"`
}

// DefaultMaxDestinations bounds the domains remembered.
const (
	DefaultMaxDestinations = 10000
	maxTLSHosts            = 8
)

var downgradesTotal = metrics.Default.NewCounter("elit_starttls_downgrades_total",
	"Sessions where a destination host that offered STARTTLS before offered none.")

// OpenDestinations reads the memory kept in path (none yet is an empty
// one); max bounds the domains (0: DefaultMaxDestinations).
func OpenDestinations(path string, max int) (*Destinations, error) {
	if max <= 0 {
		max = DefaultMaxDestinations
	}
	d := &Destinations{path: path, max: max, m: map[string]*DestinationTLS{}}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return d, nil
	}
	if err != nil {
		return nil, fmt.Errorf("destinations: %w", err)
	}
	var list []DestinationTLS
	if err := json.Unmarshal(b, &list); err != nil {
		return nil, fmt.Errorf("destinations %s: %w", path, err)
	}
	for _, x := range list {
		if x.Domain != "" {
			d.m[x.Domain] = &x
		}
	}
	d.evict()
	return d, nil
}

// note records what a session's server offered (o is the outcome of a
// session whose TLS requirement was met). Only direct deliveries say
// anything of a destination domain. A nil Destinations remembers
// nothing.
func (d *Destinations) note(o TLSOutcome, now time.Time, log *slog.Logger) {
	if d == nil || o.Transport != "direct" || o.Domain == "" || o.ImplicitTLS {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	x := d.m[o.Domain]
	if x == nil {
		x = &DestinationTLS{Domain: o.Domain}
		d.m[o.Domain] = x
	}
	known := slices.Contains(x.TLSHosts, o.Host)
	switch {
	case o.STARTTLS && !known:
		x.TLSHosts = append(x.TLSHosts, o.Host)
		if len(x.TLSHosts) > maxTLSHosts {
			x.TLSHosts = x.TLSHosts[len(x.TLSHosts)-maxTLSHosts:]
		}
	case !o.STARTTLS && known:
		x.Downgrades++
		x.LastDowngrade = now
		downgradesTotal.Inc()
		log.Warn("a mail exchanger that offered STARTTLS before offers none now: a downgrade attack, or a broken server",
			"domain", o.Domain, "host", o.Host, "addr", o.Addr)
	}
	if o.Host == x.Host && x.REQUIRETLS && o.Achieved != TLSNone && !o.REQUIRETLS {
		log.Info("a mail exchanger no longer offers REQUIRETLS", "domain", o.Domain, "host", o.Host)
	}
	x.Host, x.STARTTLS, x.REQUIRETLS, x.Updated = o.Host, o.STARTTLS, o.REQUIRETLS && o.Achieved != TLSNone, now
	d.dirty = true
	if len(d.m) > d.max {
		d.evict()
	}
}

// evict forgets the least recently seen domains over max. d.mu is held
// (or d is not shared yet).
func (d *Destinations) evict() {
	if len(d.m) <= d.max {
		return
	}
	all := d.sorted()
	sort.SliceStable(all, func(i, j int) bool { return all[i].Updated.Before(all[j].Updated) })
	for _, x := range all[:len(all)-d.max] {
		delete(d.m, x.Domain)
	}
}

// sorted returns the memory by domain. d.mu is held.
func (d *Destinations) sorted() []DestinationTLS {
	out := make([]DestinationTLS, 0, len(d.m))
	for _, x := range d.m {
		c := *x
		c.TLSHosts = slices.Clone(x.TLSHosts)
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Domain < out[j].Domain })
	return out
}

// List returns what is remembered, by domain: for the status page and
// elit queue destinations.
func (d *Destinations) List() []DestinationTLS {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.sorted()
}

// Save writes the memory to its file when it changed since the last
// Save (atomically: a crash leaves the old or the new file).
func (d *Destinations) Save() error {
	d.mu.Lock()
	if !d.dirty {
		d.mu.Unlock()
		return nil
	}
	list := d.sorted()
	d.dirty = false
	d.mu.Unlock()
	b, err := json.MarshalIndent(list, "", "  ")
	if err != nil {
		return err
	}
	if err := renameio.WriteFile(d.path, append(b, '\n'), 0o600); err != nil {
		d.mu.Lock()
		d.dirty = true
		d.mu.Unlock()
		return fmt.Errorf("destinations: %w", err)
	}
	return nil
}
