package server

import (
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/google/renameio/v2"
)

// minKeyLen is the shortest secret key loadKey accepts.
const minKeyLen = 16

// loadKey reads a secret key file, making it (32 random bytes) the first
// time. A key file that exists but is too short is refused rather than
// replaced: a new key would invalidate everything signed with the old one
// (every SRS address in flight).
func loadKey(path string, log *slog.Logger) ([]byte, error) {
	key, err := os.ReadFile(path)
	if err == nil {
		if len(key) < minKeyLen {
			return nil, fmt.Errorf("%s: %d bytes, a key needs at least %d; restore the old key, or remove the file to make a new one (which invalidates the addresses made with the old)", path, len(key), minKeyLen)
		}
		return key, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	key = make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("making %s: %w", path, err)
	}
	if err := renameio.WriteFile(path, key, 0o600); err != nil {
		return nil, err
	}
	log.Info("generated a key", "path", path)
	return key, nil
}
