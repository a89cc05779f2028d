package queue

import (
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/renameio/v2"
)

// The former layout, before issue 14: a message was two files, <id>.msg
// (the data) and <id>.json (the envelope and state, rewritten at each
// change), each fsynced, and the directory. Open converts such a queue
// (the appliance keeps its queue in /perm across updates); a tool on a
// queue no server opened since reads it, and edits it as before.

// convert turns each pair <id>.json and <id>.msg into <id>.q, syncs, then
// removes the pairs and syncs again: a crash in between leaves both
// forms, and the next Open takes the new one when it is whole, or
// converts again. It removes what the former Open removed: data without
// an envelope (never acknowledged) and an envelope without data (a
// failed commit or damage: no message). It reports whether it changed
// anything.
func (s *Store) convert(names []string, have map[string]bool) (bool, error) {
	var pairs []string
	changed := false
	for _, name := range names {
		var what string
		if id, ok := strings.CutSuffix(name, ".msg"); ok && idPattern.MatchString(id) && !have[id+".json"] {
			what = "data without an envelope"
		} else if id, ok := strings.CutSuffix(name, ".json"); ok && idPattern.MatchString(id) {
			if have[id+".msg"] {
				pairs = append(pairs, id)
				continue
			}
			what = "envelope without data"
		} else {
			continue
		}
		if err := s.fs.Remove(name); err != nil {
			return false, fmt.Errorf("queue cleanup: %w", err)
		}
		changed = true
		if what == "envelope without data" {
			s.log.Warn("queue cleanup: removed an envelope without data (a failed commit, or damage)", "file", name)
		} else {
			s.log.Info("queue cleanup: removed "+what, "file", name)
		}
	}
	if len(pairs) == 0 {
		return changed, nil
	}
	for _, id := range pairs {
		if have[id+fileSuffix] {
			if ok, err := s.whole(id + fileSuffix); err != nil {
				return false, err
			} else if ok {
				continue // converted before a crash cut the removal of the pair
			}
		}
		if err := s.convertOne(id); err != nil {
			return false, fmt.Errorf("queue %s: converting: %w", id, err)
		}
	}
	if err := s.group.Wait(); err != nil {
		return false, fmt.Errorf("queue conversion: %w", err)
	}
	for _, id := range pairs {
		for _, ext := range []string{".json", ".msg"} {
			if err := s.fs.Remove(id + ext); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return false, fmt.Errorf("queue conversion: %w", err)
			}
		}
	}
	s.log.Info("queue: converted to one file per message", "messages", len(pairs))
	return true, nil
}

// whole reports whether queue file name passes its checks.
func (s *Store) whole(name string) (bool, error) {
	f, err := s.fs.OpenFile(name, os.O_RDONLY, 0)
	if err != nil {
		return false, fmt.Errorf("queue cleanup: %w", err)
	}
	defer f.Close()
	_, _, _, err = readFile(f, true)
	if errors.Is(err, errDamaged) {
		return false, nil
	}
	return err == nil, err
}

// convertOne writes <id>.q from the pair of the former layout.
func (s *Store) convertOne(id string) error {
	m, err := s.legacyGet(id)
	if err != nil {
		return err
	}
	data, err := s.fs.OpenFile(id+".msg", os.O_RDONLY, 0)
	if err != nil {
		return err
	}
	defer data.Close()
	tmp := "." + id + fileSuffix + ".tmp"
	f, err := s.fs.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	c := crc32.New(crcTable)
	n, err := io.Copy(io.MultiWriter(io.NewOffsetWriter(f, headerSize), c), data)
	if err == nil {
		err = writeTail(f, m, n, c.Sum32())
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = s.fs.Rename(tmp, id+fileSuffix)
	}
	if err != nil {
		s.fs.Remove(tmp)
	}
	return err
}

func (s *Store) legacyPath(id, ext string) string { return filepath.Join(s.dir, id+ext) }

// legacyGet reads <id>.json.
func (s *Store) legacyGet(id string) (*Message, error) {
	f, err := s.fs.OpenFile(id+".json", os.O_RDONLY, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		return nil, err
	}
	m := &Message{}
	if err := json.Unmarshal(b, m); err != nil {
		return nil, fmt.Errorf("queue %s: bad envelope: %w", id, err)
	}
	if m.ID != id {
		return nil, fmt.Errorf("queue %s: the envelope says it is %q", id, m.ID)
	}
	return m, nil
}

// legacyData reads <id>.msg below the Header of <id>.json.
func (s *Store) legacyData(id string) (io.ReadCloser, error) {
	m, err := s.legacyGet(id)
	if err != nil {
		return nil, err
	}
	f, err := s.fs.OpenFile(id+".msg", os.O_RDONLY, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if err != nil {
		return nil, err
	}
	return struct {
		io.Reader
		io.Closer
	}{io.MultiReader(strings.NewReader(m.Header), f), f}, nil
}

// legacyUpdate rewrites <id>.json, as the former layout did.
func (s *Store) legacyUpdate(m *Message) error {
	if _, err := s.legacyGet(m.ID); err != nil {
		return err
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("queue %s: %w", m.ID, err)
	}
	if err := renameio.WriteFile(s.legacyPath(m.ID, ".json"), append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("queue %s: %w", m.ID, err)
	}
	s.syncSoon()
	return nil
}

// legacyRemove removes <id>.json, then <id>.msg.
func (s *Store) legacyRemove(id string) error {
	if err := s.fs.Remove(id + ".json"); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%w: %s", ErrNotFound, id)
		}
		return err
	}
	if err := s.fs.Remove(id + ".msg"); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	s.syncSoon()
	return nil
}
