package userdb

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/renameio/v2"

	"elit.local/oneffs"
)

// Loader keeps the database in use. It reloads it from its source on
// request, and keeps the last good copy in a cache file, so that a bad
// database never replaces a good one and a server restarted with a broken
// source still serves its users.
type Loader struct {
	source string
	domain string
	extra  []string
	cache  string
	opts   []oneffs.Option
	log    *slog.Logger

	cur atomic.Pointer[DB]

	mu      sync.Mutex // serialises loads
	lastSum [sha256.Size]byte
	info    LoadInfo
}

// LoadInfo describes the last load attempt.
type LoadInfo struct {
	Time      time.Time // of the last attempt
	Loaded    time.Time // when the database in use was loaded
	FromCache bool      // the database in use came from the cache file
	Err       error     // why the last attempt failed, or nil
}

// NewLoader returns a Loader for the database at source (a JSON file, or a
// OneFFS image or device, see ReadSource), whose last good copy is kept
// in cache ("" for none). Load must be called before DB.
func NewLoader(source, cache string, log *slog.Logger, domain string, extra []string, opts ...oneffs.Option) *Loader {
	return &Loader{source: source, cache: cache, log: log, domain: domain, extra: extra, opts: opts}
}

// DB returns the database in use. It is nil only before the first
// successful Load.
func (l *Loader) DB() *DB { return l.cur.Load() }

// Info returns what happened at the last load.
func (l *Loader) Info() LoadInfo {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.info
}

// Load reads and parses the source. A good database replaces the one in
// use (and the cache); a bad one is reported and the one in use stays.
// When there is none in use yet, the cache is tried. Load returns an
// error only when no database is in use after it.
func (l *Loader) Load() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.load(false)
}

// Check reloads the database if its source changed since the last load.
func (l *Loader) Check() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.load(true)
}

func (l *Loader) load(onlyIfChanged bool) error {
	now := time.Now()
	l.info.Time = now
	data, err := ReadSource(l.source, l.opts...)
	var sum [sha256.Size]byte
	if err == nil {
		sum = sha256.Sum256(data)
		if onlyIfChanged && sum == l.lastSum && l.cur.Load() != nil {
			return nil
		}
	}
	var db *DB
	if err == nil {
		db, err = Parse(data, l.domain, l.extra...)
	}
	if err != nil {
		err = fmt.Errorf("user database %s: %w", l.source, err)
		// A periodic check reports a given failure once, not every time.
		report := !onlyIfChanged || l.info.Err == nil || l.info.Err.Error() != err.Error()
		l.info.Err = err
		l.lastSum = sum
		if l.cur.Load() != nil {
			if report {
				l.log.Error("cannot load the user database; the one in use stays", "source", l.source, "err", err)
			}
			return nil
		}
		return l.loadCache(err)
	}
	l.lastSum = sum
	l.info.Err = nil
	l.info.Loaded = now
	l.info.FromCache = false
	l.cur.Store(db)
	for _, w := range db.Warnings {
		l.log.Warn("user database", "source", l.source, "problem", w.String())
	}
	l.log.Info("user database loaded", "source", l.source, "addresses", db.Len(), "domains", db.Domains())
	if l.cache != "" {
		old, _ := os.ReadFile(l.cache)
		if !bytes.Equal(old, data) {
			if err := renameio.WriteFile(l.cache, data, 0o600); err != nil {
				l.log.Error("cannot write the user database cache", "path", l.cache, "err", err)
			}
		}
	}
	return nil
}

func (l *Loader) loadCache(cause error) error {
	if l.cache == "" {
		return cause
	}
	data, err := os.ReadFile(l.cache)
	if errors.Is(err, os.ErrNotExist) {
		return cause
	}
	var db *DB
	if err == nil {
		db, err = Parse(data, l.domain, l.extra...)
	}
	if err != nil {
		return fmt.Errorf("%w; cached copy %s: %w", cause, l.cache, err)
	}
	l.cur.Store(db)
	l.info.Loaded = time.Now()
	l.info.FromCache = true
	l.log.Error("cannot load the user database; serving the cached copy", "source", l.source, "err", cause)
	l.log.Warn("serving the cached user database", "cache", l.cache, "addresses", db.Len())
	return nil
}

// Watch calls Check every interval until ctx is done, so that a changed
// file or partition is picked up without a signal.
func (l *Loader) Watch(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			l.Check()
		}
	}
}

// Replace checks data as a database and, when it is valid, writes it to the
// source and loads it: a JSON file is replaced atomically (renameio), a
// OneFFS image or partition is rewritten in its own format (fail-safe keeps
// the old copy readable until the new one is complete). An invalid database
// is refused with Parse's *Error and nothing is written.
func (l *Loader) Replace(data []byte) (*DB, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	db, err := Parse(data, l.domain, l.extra...)
	if err != nil {
		return nil, err
	}
	if err := writeSource(l.source, data, l.opts...); err != nil {
		return nil, fmt.Errorf("writing the user database to %s: %w", l.source, err)
	}
	if err := l.load(false); err != nil {
		return nil, err
	}
	if l.info.Err != nil {
		return nil, l.info.Err
	}
	return db, nil
}

// writeSource stores data where ReadSource reads it from.
func writeSource(path string, data []byte, opts ...oneffs.Option) error {
	path, err := sourcePath(path)
	if err != nil {
		return err
	}
	isJSON, err := looksLikeJSON(path)
	if err != nil {
		return err
	}
	if isJSON {
		return renameio.WriteFile(path, data, 0o600)
	}
	im, err := oneffs.Open(path, opts...)
	if err != nil {
		return err
	}
	if err := im.Write(data); err != nil {
		im.Close()
		return err
	}
	return im.Close()
}
