// Package lists keeps what Elit knows about its mailing lists (names with
// several mailboxes) beyond the user database: the bounces of each member.
// List mail goes out with a per-member bounce address (VERP: the list's
// local part, "+bounces=", the member's address with "=" for "@"), so a
// bounce names the member it is about without parsing the report.
package lists

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/google/renameio/v2"
)

const tag = "+bounces="

// BounceAddress returns the envelope sender for list mail to member.
func BounceAddress(list, member string) string {
	l, d, _ := strings.Cut(list, "@")
	return l + tag + strings.Replace(member, "@", "=", 1) + "@" + d
}

// ParseBounceAddress undoes BounceAddress: ok is false for other
// addresses.
func ParseBounceAddress(addr string) (list, member string, ok bool) {
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return "", "", false
	}
	local, domain := addr[:at], addr[at+1:]
	i := strings.Index(strings.ToLower(local), tag)
	if i <= 0 {
		return "", "", false
	}
	m := local[i+len(tag):]
	eq := strings.LastIndexByte(m, '=')
	if eq <= 0 || eq == len(m)-1 {
		return "", "", false
	}
	return local[:i] + "@" + domain, m[:eq] + "@" + m[eq+1:], true
}

// Member is the bounce record of one member.
type Member struct {
	Bounces    int       `json:"bounces"`
	Last       time.Time `json:"last"`
	LastReason string    `json:"last_reason,omitempty"`
}

// Bounces is the bounce count of every list member, kept in a JSON file.
type Bounces struct {
	path string
	mu   sync.Mutex
}

// Open returns the bounce store kept in path.
func Open(path string) *Bounces { return &Bounces{path: path} }

// Read returns the records: list → member → record.
func (b *Bounces) Read() (map[string]map[string]*Member, error) {
	data, err := os.ReadFile(b.path)
	if errors.Is(err, os.ErrNotExist) {
		return map[string]map[string]*Member{}, nil
	}
	if err != nil {
		return nil, err
	}
	out := map[string]map[string]*Member{}
	if err := json.Unmarshal(data, &out); err != nil {
		return nil, fmt.Errorf("%s: %w", b.path, err)
	}
	return out, nil
}

// Record counts a bounce of member of list.
func (b *Bounces) Record(list, member, reason string, now time.Time) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	all, err := b.Read()
	if err != nil {
		all = map[string]map[string]*Member{} // a damaged file is replaced
	}
	list, member = strings.ToLower(list), strings.ToLower(member)
	if all[list] == nil {
		all[list] = map[string]*Member{}
	}
	m := all[list][member]
	if m == nil {
		m = &Member{}
		all[list][member] = m
	}
	m.Bounces++
	m.Last = now.UTC()
	if len(reason) > 300 {
		reason = reason[:300]
	}
	m.LastReason = reason
	data, err := json.MarshalIndent(all, "", "  ")
	if err != nil {
		return err
	}
	return renameio.WriteFile(b.path, append(data, '\n'), 0o600)
}

// Format writes the records one line per member, sorted.
func Format(all map[string]map[string]*Member) []string {
	var lines []string
	for l, ms := range all {
		for m, r := range ms {
			lines = append(lines, fmt.Sprintf("%s  %s  %d bounces, last %s: %s", l, m, r.Bounces, r.Last.Format(time.RFC3339), r.LastReason))
		}
	}
	sort.Strings(lines)
	return lines
}
