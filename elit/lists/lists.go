// Package lists keeps what Elit knows about its mailing lists (names with
// several mailboxes) beyond the user database: the bounces of each member.
// List mail goes out with a per-member bounce address (VERP: the list's
// local part, "+bounces=", a signature, the member's address with "=" for
// "@"), so a bounce names the member it is about without parsing the
// report:
//
//	team+bounces=SSSSSSSSSSSSS=romain=example.com@example.org
//
// A bounce address is a capability (a bounce to it counts against the
// member), so it is signed: SSSSSSSSSSSSS is a keyed HMAC-SHA256 of the
// list and the member in 13 base32 characters (65 bits), hopeless to
// guess, insensitive to case like the rest of the address.
package lists

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/google/renameio/v2"
)

const (
	tag    = "+bounces="
	sigLen = 13
	// maxReason bounds the reason kept per member.
	maxReason = 300
)

// Signer makes and checks bounce addresses with a secret key.
type Signer struct{ key []byte }

// NewSigner returns a Signer for key (the server's secret).
func NewSigner(key []byte) *Signer { return &Signer{key: key} }

func (s *Signer) sign(list, member string) string {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte("elit list bounce\x00"))
	m.Write([]byte(strings.ToLower(list)))
	m.Write([]byte{0})
	m.Write([]byte(strings.ToLower(member)))
	return base32.StdEncoding.EncodeToString(m.Sum(nil))[:sigLen]
}

// BounceAddress returns the envelope sender for list mail to member.
func (s *Signer) BounceAddress(list, member string) string {
	l, d, _ := strings.Cut(list, "@")
	return l + tag + s.sign(list, member) + "=" + strings.Replace(member, "@", "=", 1) + "@" + d
}

// ParseBounceAddress undoes BounceAddress. ok is false for other addresses
// and for bounce addresses whose signature is not right.
func (s *Signer) ParseBounceAddress(addr string) (list, member string, ok bool) {
	list, member, sig, ok := split(addr)
	if !ok {
		return "", "", false
	}
	want := s.sign(list, member)
	if subtle.ConstantTimeCompare([]byte(strings.ToUpper(sig)), []byte(want)) != 1 {
		return "", "", false
	}
	return list, member, true
}

// IsBounceAddress reports whether addr has the form of a bounce address,
// signed or not.
func IsBounceAddress(addr string) bool {
	_, _, _, ok := split(addr)
	return ok
}

func split(addr string) (list, member, sig string, ok bool) {
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return "", "", "", false
	}
	local, domain := addr[:at], addr[at+1:]
	i := indexFold(local, tag)
	if i <= 0 {
		return "", "", "", false
	}
	m := local[i+len(tag):]
	if len(m) < sigLen+1 || m[sigLen] != '=' {
		return "", "", "", false
	}
	sig, m = m[:sigLen], m[sigLen+1:]
	eq := strings.LastIndexByte(m, '=')
	if eq <= 0 || eq == len(m)-1 {
		return "", "", "", false
	}
	return local[:i] + "@" + domain, m[:eq] + "@" + m[eq+1:], sig, true
}

// indexFold is strings.Index without regard to ASCII case (lowering the
// whole string first could move the bytes of other characters).
func indexFold(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if strings.EqualFold(s[i:i+len(sub)], sub) {
			return i
		}
	}
	return -1
}

// Member is the bounce record of one member.
type Member struct {
	Bounces    int       `json:"bounces"`
	Last       time.Time `json:"last"`
	LastReason string    `json:"last_reason,omitempty"`
}

// record is one line of the file: a member's whole record after a bounce.
type record struct {
	List string `json:"list"`
	Addr string `json:"member"`
	Member
}

// Bounces is the bounce count of every list member. It lives in memory
// and in a file of JSON lines, one per bounce, each the member's whole
// record after it (so that reading the file again, or a line written
// twice, gives the same counts). A bounce appends one line and syncs it;
// the file is rewritten (atomically, renameio) only when it has grown to
// twice the records it holds, so it stays bounded by the number of
// members, which only the lists of the user database make.
type Bounces struct {
	path string

	mu    sync.Mutex
	all   map[string]map[string]*Member
	lines int
	f     *os.File // opened for appending at the first Record
}

// Open reads the bounce records kept in path (none if it does not exist).
// A file in the earlier format (one JSON object) is read too, and
// rewritten in the new one at the first Record. Lines that cannot be read
// (one cut by a crash, say) are skipped. Open writes nothing.
func Open(path string) (*Bounces, error) {
	b := &Bounces{path: path, all: map[string]map[string]*Member{}}
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return b, nil
	}
	if err != nil {
		return nil, err
	}
	var old map[string]map[string]*Member
	if json.Unmarshal(data, &old) == nil {
		for l, ms := range old {
			for m, r := range ms {
				if r != nil {
					b.set(l, m, *r)
				}
			}
		}
		b.lines = -1 // rewrite at the first Record
		return b, nil
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 64<<10)
	for sc.Scan() {
		var r record
		if json.Unmarshal(sc.Bytes(), &r) != nil || r.List == "" || r.Addr == "" {
			continue
		}
		b.set(r.List, r.Addr, r.Member)
		b.lines++
	}
	return b, nil
}

func (b *Bounces) set(list, member string, m Member) *Member {
	list, member = strings.ToLower(list), strings.ToLower(member)
	if b.all[list] == nil {
		b.all[list] = map[string]*Member{}
	}
	p := &Member{}
	*p = m
	b.all[list][member] = p
	return p
}

func (b *Bounces) count() int {
	n := 0
	for _, ms := range b.all {
		n += len(ms)
	}
	return n
}

// Read returns a copy of the records: list → member → record.
func (b *Bounces) Read() map[string]map[string]*Member {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := map[string]map[string]*Member{}
	for l, ms := range b.all {
		out[l] = map[string]*Member{}
		for m, r := range ms {
			c := *r
			out[l][m] = &c
		}
	}
	return out
}

// Record counts a bounce of member of list, durably when it returns nil.
// The caller makes sure member is a member of list.
func (b *Bounces) Record(list, member, reason string, now time.Time) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	list, member = strings.ToLower(list), strings.ToLower(member)
	m := Member{}
	if old := b.all[list][member]; old != nil {
		m = *old
	}
	m.Bounces++
	m.Last = now.UTC()
	if len(reason) > maxReason {
		reason = reason[:maxReason]
	}
	m.LastReason = reason
	b.set(list, member, m)
	if b.lines < 0 || b.lines >= 2*b.count()+64 {
		return b.rewrite()
	}
	line, err := json.Marshal(record{List: list, Addr: member, Member: m})
	if err != nil {
		return err
	}
	if b.f == nil {
		if err := b.openAppend(); err != nil {
			return err
		}
	}
	if _, err := b.f.Write(append(line, '\n')); err != nil {
		return fmt.Errorf("%s: %w", b.path, err)
	}
	b.lines++
	if err := b.f.Sync(); err != nil {
		return fmt.Errorf("%s: %w", b.path, err)
	}
	return nil
}

// openAppend opens the file for appending, creating it, and ends a last
// line a crash cut short so that the next record starts on its own line.
func (b *Bounces) openAppend() error {
	f, err := os.OpenFile(b.path, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	if fi.Size() == 0 {
		if err := syncDir(filepath.Dir(b.path)); err != nil {
			f.Close()
			return err
		}
	} else {
		last := make([]byte, 1)
		if _, err := f.ReadAt(last, fi.Size()-1); err != nil {
			f.Close()
			return err
		}
		if last[0] != '\n' {
			if _, err := f.Write([]byte{'\n'}); err != nil {
				f.Close()
				return err
			}
		}
	}
	b.f = f
	return nil
}

// rewrite replaces the file with one line per member.
func (b *Bounces) rewrite() error {
	if b.f != nil {
		b.f.Close()
		b.f = nil
	}
	var buf bytes.Buffer
	n := 0
	for l, ms := range b.all {
		for m, r := range ms {
			line, err := json.Marshal(record{List: l, Addr: m, Member: *r})
			if err != nil {
				return err
			}
			buf.Write(append(line, '\n'))
			n++
		}
	}
	if err := renameio.WriteFile(b.path, buf.Bytes(), 0o600); err != nil {
		return err
	}
	if err := syncDir(filepath.Dir(b.path)); err != nil {
		return err
	}
	b.lines = n
	return nil
}

// Close closes the file.
func (b *Bounces) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.f == nil {
		return nil
	}
	err := b.f.Close()
	b.f = nil
	return err
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
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
