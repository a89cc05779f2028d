package mtasts

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/renameio/v2"

	"elit.local/elit/dns"
)

// Defaults and fixed intervals of a Cache.
const (
	// DefaultMaxDomains bounds the policies kept.
	DefaultMaxDomains = 1000
	// DefaultRefresh is how long after its fetch a policy in use is
	// fetched again (§3.3: "a suggested refresh frequency is once per
	// day"); a policy whose max_age is shorter is fetched again at half
	// of it.
	DefaultRefresh = 24 * time.Hour
	// recheck is how long a TXT lookup's answer is reused: the deliverer
	// asks for each MX host of each attempt.
	recheck = time.Minute
	// backoff is how long a fetch that failed is not tried again for the
	// same id (§3.3: "five minutes or longer per version ID").
	backoff = 5 * time.Minute
	// unused is how long a policy not used for delivery is still
	// refreshed; after that it is left to expire.
	unused = 180 * 24 * time.Hour
	// runEvery is how often Run looks for policies to refresh.
	runEvery = time.Hour
)

// Config says where a Cache keeps its policies and how it gets new ones.
type Config struct {
	// Dir holds the policies, one file per domain (STATE/mta-sts); it is
	// made if missing.
	Dir string
	// Resolver looks up the TXT records (and, with the default Fetcher,
	// the policy hosts' addresses). Required.
	Resolver dns.Resolver
	// Fetcher gets the policies; nil: one with the system's roots that
	// finds addresses through Resolver.
	Fetcher *Fetcher
	// MaxDomains bounds the policies kept; when a new one would pass it,
	// an expired one goes, else the one unused for the longest time. 0:
	// DefaultMaxDomains.
	MaxDomains int
	// Refresh is how long after its fetch a policy in use is fetched
	// again by Run or Refresh; 0: DefaultRefresh.
	Refresh time.Duration
	// Now is the clock; nil: time.Now.
	Now func() time.Time
	// Log gets the refresh failures (warnings, as §3.3 asks that
	// administrators be alerted) and the cache's own troubles; nil:
	// nothing.
	Log *slog.Logger
}

// Cache keeps the MTA-STS policies of the domains we deliver to (§3.3,
// §5.1) in memory and in Config.Dir, one file per policy domain,
// DOMAIN.json (lower-case A-labels), written atomically (renameio, then
// the directory synced):
//
//	{
//	  "domain": "example.com",
//	  "id": "20160831085700Z",
//	  "fetched": "2026-05-01T10:00:00Z",
//	  "expires": "2026-05-08T10:00:00Z",
//	  "last_used": "2026-05-03T08:12:44Z",
//	  "policy": ["version: STSv1", "mode: enforce", "mx: mail.example.com", "max_age: 604800"]
//	}
//
// "policy" is the policy's lines as served; "expires" is "fetched" plus
// max_age; "last_used" is as of the last write. A file that does not
// read back as a valid policy is removed when the cache is opened, as
// are expired ones. A Cache is safe for concurrent use.
type Cache struct {
	cfg     Config
	fetcher *Fetcher
	now     func() time.Time
	log     *slog.Logger

	// fileMu orders the writes and removals of files, each with its
	// change to entries.
	fileMu  sync.Mutex
	mu      sync.Mutex
	entries map[string]*entry  // by domain
	probes  map[string]*probe  // recent TXT lookups and failed fetches, by domain
	flights map[string]*flight // fetches under way, by domain
}

// entry is a cached policy, as kept in its file.
type entry struct {
	Domain   string    `json:"domain"`
	ID       string    `json:"id"`
	Fetched  time.Time `json:"fetched"`
	Expires  time.Time `json:"expires"`
	LastUsed time.Time `json:"last_used"`
	Lines    []string  `json:"policy"`

	policy *Policy
}

// probe is what was learnt of a domain lately, cached or not.
type probe struct {
	checked time.Time // when the TXT record was looked up
	rec     Record    // what it was
	err     error     // or why there was none

	failedID string    // the id whose fetch failed last
	failedAt time.Time // when
	failErr  error     // why
}

// flight is a fetch under way, which others asking for the same domain
// wait for.
type flight struct {
	done chan struct{}
	res  Result
}

// Open opens the cache in cfg.Dir, making it if needed, and reads the
// policies kept there.
func Open(cfg Config) (*Cache, error) {
	if cfg.Dir == "" {
		return nil, errors.New("mta-sts cache: no directory")
	}
	if cfg.Resolver == nil {
		return nil, errors.New("mta-sts cache: no resolver")
	}
	if cfg.MaxDomains <= 0 {
		cfg.MaxDomains = DefaultMaxDomains
	}
	if cfg.Refresh <= 0 {
		cfg.Refresh = DefaultRefresh
	}
	c := &Cache{
		cfg:     cfg,
		fetcher: cfg.Fetcher,
		now:     cfg.Now,
		log:     cfg.Log,
		entries: map[string]*entry{},
		probes:  map[string]*probe{},
		flights: map[string]*flight{},
	}
	if c.fetcher == nil {
		c.fetcher = &Fetcher{Resolver: cfg.Resolver}
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("mta-sts cache: %w", err)
	}
	if err := c.load(); err != nil {
		return nil, fmt.Errorf("mta-sts cache %s: %w", cfg.Dir, err)
	}
	return c, nil
}

// load reads the policies in the directory, removing what an
// interrupted write left, the expired policies and the damaged files.
func (c *Cache) load() error {
	des, err := os.ReadDir(c.cfg.Dir)
	if err != nil {
		return err
	}
	now := c.now()
	removed := false
	remove := func(path, why string) {
		if err := os.Remove(path); err != nil {
			c.log.Warn("mta-sts cache: cannot remove a file", "path", path, "err", err)
			return
		}
		c.log.Info("mta-sts cache: removed", "path", path, "why", why)
		removed = true
	}
	for _, de := range des {
		name := de.Name()
		path := filepath.Join(c.cfg.Dir, name)
		if !de.Type().IsRegular() {
			continue
		}
		if strings.HasPrefix(name, ".") && strings.Contains(name, ".json") {
			remove(path, "left by an interrupted write")
			continue
		}
		domain, ok := strings.CutSuffix(name, ".json")
		if !ok {
			continue
		}
		e, err := readEntry(path, domain)
		switch {
		case err != nil:
			remove(path, err.Error())
		case !now.Before(e.Expires):
			remove(path, "expired")
		default:
			c.entries[domain] = e
		}
	}
	if removed {
		if err := syncDir(c.cfg.Dir); err != nil {
			return err
		}
	}
	for len(c.entries) > c.cfg.MaxDomains {
		c.fileMu.Lock()
		c.evictLocked(now, "")
		c.fileMu.Unlock()
	}
	return nil
}

// readEntry reads the file of domain's policy and checks it.
func readEntry(path, domain string) (*entry, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	e := &entry{}
	if err := json.Unmarshal(b, e); err != nil {
		return nil, fmt.Errorf("not a cached policy: %w", err)
	}
	if d, err := normalizeDomain(e.Domain); err != nil || d != domain || e.Domain != domain {
		return nil, fmt.Errorf("domain %q in the file of %s", e.Domain, domain)
	}
	if !validID(e.ID) {
		return nil, fmt.Errorf("id %q", e.ID)
	}
	p, err := ParsePolicy(strings.Join(e.Lines, "\n"))
	if err != nil {
		return nil, err
	}
	if e.Expires.After(e.Fetched.Add(p.MaxAge)) {
		return nil, fmt.Errorf("expires %v, after fetched + max_age", e.Expires)
	}
	e.policy = p
	return e, nil
}

// Policy returns the MTA-STS policy in force for domain (§3, §5.1): the
// cached one while the TXT record's id is the same (looked up at most
// once a minute); a new one, fetched, when the id changed or nothing is
// cached; the cached one still when the TXT record is gone (§3.1) or the
// fetch failed (§3.3), until it expires, except a cached policy in mode
// none, dropped once the record is gone. Result.Policy is nil when no
// policy is in force. It does not fail: Result.Err and Result.Failure
// say what went wrong.
func (c *Cache) Policy(ctx context.Context, domain string) Result {
	d, err := normalizeDomain(domain)
	if err != nil {
		return Result{Domain: domain, Err: err}
	}
	now := c.now()
	c.mu.Lock()
	e := c.liveLocked(d, now)
	if e != nil {
		e.LastUsed = now
	}
	var rec Record
	var lerr error
	pr := c.probes[d]
	fresh := pr != nil && !pr.checked.IsZero() && now.Sub(pr.checked) < recheck
	if fresh {
		rec, lerr = pr.rec, pr.err
	}
	c.mu.Unlock()
	if !fresh {
		rec, lerr = c.lookup(ctx, d)
	}
	switch {
	case lerr != nil && !errors.Is(lerr, ErrNoRecord):
		// A failed lookup: what is cached stays in force.
		return c.result(d, e, lerr)
	case lerr != nil:
		if e != nil && e.policy.Mode == None {
			c.remove(d, e, "mode none and no TXT record")
			return Result{Domain: d, Err: lerr}
		}
		return c.result(d, e, lerr)
	case e != nil && e.ID == rec.ID:
		return c.result(d, e, nil)
	}
	return c.update(ctx, d, rec.ID, false)
}

// lookup looks up domain's TXT record and keeps the answer for recheck.
func (c *Cache) lookup(ctx context.Context, d string) (Record, error) {
	rec, _, err := LookupRecord(ctx, c.cfg.Resolver, d)
	if ctx.Err() != nil {
		return rec, err // our caller gave up: nothing learnt of the domain
	}
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	pr := c.probeLocked(d, now)
	pr.checked, pr.rec, pr.err = now, rec, err
	return rec, err
}

// probeLocked returns the probe of d, made if needed; the probes are
// bounded as the entries are, the stale ones going first.
func (c *Cache) probeLocked(d string, now time.Time) *probe {
	if pr := c.probes[d]; pr != nil {
		return pr
	}
	if len(c.probes) >= c.cfg.MaxDomains {
		for k, pr := range c.probes {
			if now.Sub(pr.checked) >= recheck && now.Sub(pr.failedAt) >= backoff {
				delete(c.probes, k)
			}
		}
		for k := range c.probes { // all recent: any one
			if len(c.probes) < c.cfg.MaxDomains {
				break
			}
			delete(c.probes, k)
		}
	}
	pr := &probe{}
	c.probes[d] = pr
	return pr
}

// liveLocked returns d's cached policy unless it has expired. Expired
// ones stay until Refresh removes them (or a new policy replaces them,
// or the cache is full).
func (c *Cache) liveLocked(d string, now time.Time) *entry {
	if e := c.entries[d]; e != nil && now.Before(e.Expires) {
		return e
	}
	return nil
}

// result is the Result of d with the cached policy e (nil: none) and
// why discovery gave nothing newer.
func (c *Cache) result(d string, e *entry, err error) Result {
	r := Result{Domain: d, Err: err, Failure: FailureType(err)}
	if e != nil {
		r.Policy, r.ID, r.Lines = e.policy, e.ID, e.Lines
		r.Fetched, r.Expires = e.Fetched, e.Expires
	}
	return r
}

// update fetches d's policy announced with id, once for all who ask at
// the same time, not again within backoff of a failure for the same
// id, nor when the policy of id is cached by now, unless again is set
// (a refresh); it keeps a new policy and returns it, or returns the
// cached one with the failure.
func (c *Cache) update(ctx context.Context, d, id string, again bool) Result {
	c.mu.Lock()
	if f := c.flights[d]; f != nil {
		c.mu.Unlock()
		select {
		case <-f.done:
			return f.res
		case <-ctx.Done():
			c.mu.Lock()
			e := c.liveLocked(d, c.now())
			c.mu.Unlock()
			return c.result(d, e, fmt.Errorf("%w: %w", errFetch, ctx.Err()))
		}
	}
	now := c.now()
	if e := c.liveLocked(d, now); e != nil && e.ID == id && !again {
		c.mu.Unlock()
		return c.result(d, e, nil) // fetched by another meanwhile
	}
	if pr := c.probes[d]; pr != nil && pr.failedID == id && now.Sub(pr.failedAt) < backoff {
		e := c.liveLocked(d, now)
		c.mu.Unlock()
		return c.result(d, e, pr.failErr)
	}
	f := &flight{done: make(chan struct{})}
	c.flights[d] = f
	c.mu.Unlock()

	f.res = c.fetch(ctx, d, id)

	c.mu.Lock()
	delete(c.flights, d)
	close(f.done)
	c.mu.Unlock()
	return f.res
}

// fetch fetches d's policy announced with id and keeps it.
func (c *Cache) fetch(ctx context.Context, d, id string) Result {
	p, text, err := c.fetcher.Fetch(ctx, d)
	now := c.now()
	if err != nil {
		c.mu.Lock()
		if ctx.Err() == nil {
			pr := c.probeLocked(d, now)
			pr.failedID, pr.failedAt, pr.failErr = id, now, err
		}
		e := c.liveLocked(d, now)
		c.mu.Unlock()
		return c.result(d, e, err)
	}
	e := &entry{Domain: d, ID: id, Fetched: now, Expires: now.Add(p.MaxAge), LastUsed: now, Lines: Lines(text), policy: p}
	c.mu.Lock()
	if pr := c.probes[d]; pr != nil {
		pr.failedID, pr.failErr = "", nil
	}
	if old := c.liveLocked(d, now); old != nil {
		e.LastUsed = old.LastUsed // a refresh is no use
	}
	c.mu.Unlock()
	if p.MaxAge == 0 {
		// Good for this delivery only (§3.2: cached "for up to" max_age);
		// it replaces what was cached.
		c.mu.Lock()
		old := c.entries[d]
		c.mu.Unlock()
		if old != nil {
			c.remove(d, old, "replaced by a policy with max_age 0")
		}
		return c.result(d, e, nil)
	}
	c.store(e)
	return c.result(d, e, nil)
}

// store writes e's file and makes it d's cached policy, evicting another
// when the cache is full. A failed write is logged: the policy is used
// from memory.
func (c *Cache) store(e *entry) {
	c.fileMu.Lock()
	defer c.fileMu.Unlock()
	if err := c.writeFile(e); err != nil {
		c.log.Error("mta-sts cache: cannot write a policy", "domain", e.Domain, "err", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.entries[e.Domain] = e
	for len(c.entries) > c.cfg.MaxDomains {
		c.evictLocked(c.now(), e.Domain)
	}
}

func (c *Cache) path(d string) string { return filepath.Join(c.cfg.Dir, d+".json") }

func (c *Cache) writeFile(e *entry) error {
	b, err := json.MarshalIndent(e, "", "  ")
	if err != nil {
		return err
	}
	if err := renameio.WriteFile(c.path(e.Domain), append(b, '\n'), 0o600); err != nil {
		return err
	}
	return syncDir(c.cfg.Dir)
}

// evictLocked drops one policy to make room, not keep's: an expired one,
// else the one unused for the longest time. fileMu and mu are held.
func (c *Cache) evictLocked(now time.Time, keep string) {
	var victim *entry
	for d, e := range c.entries {
		if d == keep {
			continue
		}
		if !now.Before(e.Expires) {
			victim = e
			break
		}
		if victim == nil || e.LastUsed.Before(victim.LastUsed) || e.LastUsed.Equal(victim.LastUsed) && d < victim.Domain {
			victim = e
		}
	}
	if victim == nil {
		return
	}
	delete(c.entries, victim.Domain)
	if err := os.Remove(c.path(victim.Domain)); err != nil && !errors.Is(err, os.ErrNotExist) {
		c.log.Warn("mta-sts cache: cannot remove a policy", "domain", victim.Domain, "err", err)
	}
	c.log.Info("mta-sts cache: full, policy dropped", "domain", victim.Domain, "max", c.cfg.MaxDomains)
}

// remove drops d's cached policy e, memory and file, unless another has
// replaced it meanwhile.
func (c *Cache) remove(d string, e *entry, why string) {
	c.fileMu.Lock()
	defer c.fileMu.Unlock()
	c.mu.Lock()
	if c.entries[d] != e {
		c.mu.Unlock()
		return
	}
	delete(c.entries, d)
	c.mu.Unlock()
	c.log.Info("mta-sts cache: policy removed", "domain", d, "why", why)
	c.removeFileLocked(d)
}

func (c *Cache) removeFileLocked(d string) {
	if err := os.Remove(c.path(d)); err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			c.log.Warn("mta-sts cache: cannot remove a policy", "domain", d, "err", err)
		}
		return
	}
	if err := syncDir(c.cfg.Dir); err != nil {
		c.log.Warn("mta-sts cache: cannot sync", "dir", c.cfg.Dir, "err", err)
	}
}

// Refresh fetches again the cached policies that are due (§3.3: "MTAs
// SHOULD proactively refresh cached policies before they expire"):
// those fetched Config.Refresh ago or more (half their max_age when
// that is shorter) and used in the last 180 days. A policy whose TXT
// record is gone is not fetched (§3.1) but kept until it expires, unless
// its mode is none: then it is removed. Failures are logged as warnings,
// except for policies in mode none (§3.3), and leave the cached policy
// in force. Expired policies are removed.
func (c *Cache) Refresh(ctx context.Context) {
	now := c.now()
	c.mu.Lock()
	var due, expired []*entry
	for _, e := range c.entries {
		if !now.Before(e.Expires) {
			expired = append(expired, e)
			continue
		}
		if now.Sub(e.LastUsed) > unused {
			continue
		}
		after := min(c.cfg.Refresh, e.policy.MaxAge/2)
		if now.Sub(e.Fetched) >= after {
			due = append(due, e)
		}
	}
	c.mu.Unlock()
	for _, e := range expired {
		c.remove(e.Domain, e, "expired")
	}
	slices.SortFunc(due, func(a, b *entry) int { return a.Expires.Compare(b.Expires) })
	for _, e := range due {
		if ctx.Err() != nil {
			return
		}
		c.refresh(ctx, e)
	}
}

// refresh fetches e's policy again.
func (c *Cache) refresh(ctx context.Context, e *entry) {
	d := e.Domain
	warn := c.log.Warn
	if e.policy.Mode == None {
		warn = c.log.Info
	}
	rec, err := c.lookup(ctx, d)
	switch {
	case errors.Is(err, ErrNoRecord) && e.policy.Mode == None:
		c.remove(d, e, "mode none and no TXT record")
		return
	case err != nil:
		warn("mta-sts: cannot refresh a policy: the cached one stays in force until it expires",
			"domain", d, "expires", e.Expires, "err", err)
		return
	}
	res := c.update(ctx, d, rec.ID, true)
	if res.Err != nil {
		warn("mta-sts: cannot refresh a policy: the cached one stays in force until it expires",
			"domain", d, "expires", e.Expires, "err", res.Err)
	}
}

// Run refreshes the policies (Refresh) at once and every hour until ctx
// ends.
func (c *Cache) Run(ctx context.Context) {
	t := time.NewTicker(runEvery)
	defer t.Stop()
	for {
		c.Refresh(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Domains returns the domains whose policies are cached and in force,
// sorted (for the status page and tests).
func (c *Cache) Domains() []string {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]string, 0, len(c.entries))
	for d := range c.entries {
		if c.liveLocked(d, now) != nil {
			out = append(out, d)
		}
	}
	slices.Sort(out)
	return out
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
