package mailauth

import (
	"crypto"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/renameio/v2"

	"elit.local/elit/dkim"
	"elit.local/elit/mailaddr"
)

// Key is one DKIM signing key of ours: DIR/DOMAIN/SELECTOR.pem.
type Key struct {
	Domain    string // as the directory names it, lower case
	Selector  string
	Algorithm string // rsa-sha256 or ed25519-sha256
	Signer    crypto.Signer
	Record    string // the TXT record to publish at SELECTOR._domainkey.DOMAIN
	Path      string
	Created   time.Time
}

// RecordName is where Record goes in DNS.
func (k Key) RecordName() string { return dkim.KeyName(k.Selector, k.Domain) }

// Keys are the DKIM keys of our domains, kept in a directory with one
// directory per domain and one PEM file per selector (RFC 6376 §3.1):
// every key of a domain signs its mail, so that a new selector can sign
// next to the old one while its record reaches DNS, and the old one is
// retired by deleting its file (then Reload, or restart).
type Keys struct {
	dir string

	mu   sync.RWMutex
	keys map[string][]Key // by canonical domain, in selector order
}

// LoadKeys reads the keys in dir (creating it). A file that is not a
// private key stops the load: better no start than mail signed with half
// the keys the operator meant.
func LoadKeys(dir string) (*Keys, error) {
	k := &Keys{dir: dir}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("dkim keys: %w", err)
	}
	return k, k.Reload()
}

// Dir is the key directory.
func (k *Keys) Dir() string { return k.dir }

// Reload reads the key directory again.
func (k *Keys) Reload() error {
	keys := map[string][]Key{}
	domains, err := os.ReadDir(k.dir)
	if err != nil {
		return fmt.Errorf("dkim keys: %w", err)
	}
	for _, d := range domains {
		if !d.IsDir() || strings.HasPrefix(d.Name(), ".") {
			continue
		}
		files, err := os.ReadDir(filepath.Join(k.dir, d.Name()))
		if err != nil {
			return fmt.Errorf("dkim keys: %w", err)
		}
		for _, f := range files {
			sel, ok := strings.CutSuffix(f.Name(), ".pem")
			if !ok || f.IsDir() || strings.HasPrefix(f.Name(), ".") {
				continue
			}
			key, err := readKey(filepath.Join(k.dir, d.Name(), f.Name()), d.Name(), sel)
			if err != nil {
				return err
			}
			c := canonical(key.Domain)
			keys[c] = append(keys[c], key)
		}
	}
	k.mu.Lock()
	k.keys = keys
	k.mu.Unlock()
	return nil
}

func readKey(path, domain, selector string) (Key, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Key{}, fmt.Errorf("dkim key: %w", err)
	}
	signer, err := dkim.ParsePrivateKey(data)
	if err != nil {
		return Key{}, fmt.Errorf("dkim key %s: %w", path, err)
	}
	alg, err := dkim.Algorithm(signer)
	if err != nil {
		return Key{}, fmt.Errorf("dkim key %s: %w", path, err)
	}
	record, err := dkim.KeyRecord(signer.Public())
	if err != nil {
		return Key{}, fmt.Errorf("dkim key %s: %w", path, err)
	}
	key := Key{Domain: strings.ToLower(domain), Selector: selector, Algorithm: alg, Signer: signer, Record: record, Path: path}
	if fi, err := os.Stat(path); err == nil {
		key.Created = fi.ModTime()
	}
	return key, nil
}

func canonical(domain string) string {
	if c, err := mailaddr.CanonicalDomain(domain); err == nil {
		return c
	}
	return strings.ToLower(domain)
}

// For returns the keys of domain (U-label or A-label).
func (k *Keys) For(domain string) []Key {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return slices.Clone(k.keys[canonical(domain)])
}

// All returns every key, by domain then selector.
func (k *Keys) All() []Key {
	k.mu.RLock()
	defer k.mu.RUnlock()
	var out []Key
	for _, d := range slices.Sorted(maps.Keys(k.keys)) {
		out = append(out, k.keys[d]...)
	}
	return out
}

// ErrExists means a key with that selector exists already.
var ErrExists = errors.New("a key with this selector exists")

// Generate makes a key for domain and selector, algo "rsa" (bits 0:
// 2048) or "ed25519", writes it (mode 0600) and loads it. It never
// replaces a key: that would break the signatures in flight.
func (k *Keys) Generate(domain, selector, algo string, bits int) (Key, error) {
	d, err := mailaddr.ParseDomain(domain)
	if err != nil || strings.HasPrefix(d, "[") {
		return Key{}, fmt.Errorf("dkim key: %q is not a domain", domain)
	}
	if !validSelector(selector) {
		return Key{}, fmt.Errorf("dkim key: selector %q: letters, digits and '-' only (RFC 6376 §3.1)", selector)
	}
	path := filepath.Join(k.dir, d, selector+".pem")
	if _, err := os.Stat(path); err == nil {
		return Key{}, fmt.Errorf("dkim key %s: %w", path, ErrExists)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return Key{}, fmt.Errorf("dkim key: %w", err)
	}
	pem, _, err := dkim.GenerateKey(algo, bits)
	if err != nil {
		return Key{}, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return Key{}, fmt.Errorf("dkim key: %w", err)
	}
	if err := renameio.WriteFile(path, pem, 0o600); err != nil {
		return Key{}, fmt.Errorf("dkim key: %w", err)
	}
	if err := k.Reload(); err != nil {
		return Key{}, err
	}
	return readKey(path, d, selector)
}

// validSelector: a selector is labels of letters, digits and hyphens,
// separated by dots (RFC 6376 §3.1, sub-domain).
func validSelector(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// DefaultSelector is the selector Ensure gives a new key: "elit", the
// year and month, and "r" for rsa or "e" for ed25519 (elit202612r), so
// that the next key, made for a rotation, has another name.
func DefaultSelector(algo string, now time.Time) string {
	suffix := "r"
	if algo == "ed25519" {
		suffix = "e"
	}
	return "elit" + now.UTC().Format("200601") + suffix
}

// Ensure makes a key of each algorithm in algos for domain when it has
// none of that algorithm: the first start signs at once, and the record
// to publish is shown (status page, elit dns-records). It returns the
// keys it made.
func (k *Keys) Ensure(domain string, algos []string, now time.Time) ([]Key, error) {
	have := map[string]bool{}
	for _, key := range k.For(domain) {
		have[strings.TrimSuffix(key.Algorithm, "-sha256")] = true
	}
	var made []Key
	for _, algo := range algos {
		if have[algo] {
			continue
		}
		key, err := k.Generate(domain, DefaultSelector(algo, now), algo, 0)
		if err != nil {
			return made, err
		}
		made = append(made, key)
	}
	return made, nil
}

// Signers returns a dkim.Signer for each key of domain, with the clock
// now.
func (k *Keys) Signers(domain string, now func() time.Time) []*dkim.Signer {
	var out []*dkim.Signer
	for _, key := range k.For(domain) {
		out = append(out, &dkim.Signer{Domain: key.Domain, Selector: key.Selector, Key: key.Signer, Now: now})
	}
	return out
}
