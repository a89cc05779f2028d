// Package queue is Elit's durable message store, between receiving and
// delivering. A message is one file, <id>.q, in one directory (format.go):
// a header with checksums, the message as received, its envelope in JSON,
// then its delivery states appended one after the other, the last one
// holding.
//
// Commit writes the file under a temporary name, renames it into place
// and waits for a sync of the file system (syncfs(2)) that started after
// the rename: a message is in the queue exactly when its file exists, so
// a server may answer 250 after DATA (RFC 5321 §4.1.1.4, "the receiver
// MUST NOT lose the message") as soon as Commit returns. Syncs are shared
// (group commit, group.go): the commits that arrive while one runs are
// covered together by the next, so a message costs at most one sync and
// fewer under concurrent receptions, where the layout of before (data
// and envelope files, each fsynced, and the directory) cost three.
//
// A state change appends a record without rewriting anything. Update and
// Remove are durable when they return (they wait for a sync, shared as
// Commit's); UpdateLazily and RemoveLazily, for deliveries, are made
// durable by the next sync, which runs within LazySync. What a crash can
// lose of those is a "delivered" mark or a removal, that is a delivery
// made again after the restart: the duplicates are bounded by what was
// delivered in the last LazySync before the crash. A failure loses
// nothing either way: lost, it is tried again and fails again; and the
// mark of a bounce follows the bounce, itself queued durably.
//
// Open removes what an interrupted Commit left (temporary files), puts
// aside queue files that fail their checks (never acknowledged, or
// damaged) and converts the queues of before (<id>.msg and <id>.json).
//
// The store holds state; scheduling deliveries is the deliverer's job.
package queue

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"
)

// Status is the delivery state of one recipient.
type Status string

// Recipient states.
const (
	Pending   Status = "pending"   // to be delivered (again)
	Delivered Status = "delivered" // the next hop accepted it
	Failed    Status = "failed"    // permanently failed; a bounce is due or sent
	Held      Status = "held"      // held by the operator
)

// Recipient is one address a message is delivered to, after expansion.
type Recipient struct {
	Address  string `json:"address"`            // where it goes
	Original string `json:"original,omitempty"` // the RCPT TO it came from, when expanded
	// List is the mailing list (a name with several mailboxes) the
	// recipient is a member of: its bounces come back to the list.
	List string `json:"list,omitempty"`
	// DSN parameters of the RCPT command (RFC 3461 §4).
	Notify string `json:"notify,omitempty"`
	ORcpt  string `json:"orcpt,omitempty"`

	Status   Status `json:"status"`
	Attempts int    `json:"attempts,omitempty"`
	// LastError is the last attempt's failure in one line, for people
	// (elit queue, the status page, the text of a DSN); Result is the
	// same as fields, for programs. Envelopes of versions before Result
	// have only LastError.
	LastError string `json:"last_error,omitempty"`
	Result    Result `json:"result,omitzero"`
	// NextAttempt is when a pending recipient is tried again, and when a
	// failed one not yet reported is reported again (zero: now).
	NextAttempt time.Time `json:"next_attempt,omitzero"`
	// Bounced is set once the sender has been told of a failure (or
	// nobody is to be told: null sender, NOTIFY=NEVER).
	Bounced bool `json:"bounced,omitempty"`
	// BounceAttempts counts the failed attempts at reporting the failure
	// (the DSN could not be made or queued): the delay before the next
	// doubles with it, as for deliveries.
	BounceAttempts int `json:"bounce_attempts,omitempty"`
	// DelayWarned is set once the sender was told of a delay.
	DelayWarned bool `json:"delay_warned,omitempty"`
}

// Result is the outcome of a recipient's last delivery attempt, as a DSN
// reports it (RFC 3464 §2.3: Status, Remote-MTA, Diagnostic-Code). The
// zero Result is none.
type Result struct {
	// RemoteMTA and RemoteAddr are the server the attempt reached or
	// tried (host name, and the address as dialled: ip:port), empty when
	// it did not get that far (a DNS failure, say).
	RemoteMTA  string `json:"remote_mta,omitempty"`
	RemoteAddr string `json:"remote_addr,omitempty"`
	// Step is where the attempt ended: connect, greeting, EHLO, STARTTLS,
	// AUTH, MAIL, RCPT or DATA; "" for a decision of ours before or
	// outside a session.
	Step string `json:"step,omitempty"`
	// Code, Enhanced and Text are the server's reply (RFC 5321 §4.2, RFC
	// 3463) when it gave one; otherwise Code is 0, Enhanced our status
	// code for the failure and Text what went wrong.
	Code     int    `json:"code,omitempty"`
	Enhanced string `json:"enhanced,omitempty"` // "5.1.1"
	Text     string `json:"text,omitempty"`
	// Permanent is set when the recipient failed for good (a 5xx reply,
	// or a failure of ours that retrying will not mend).
	Permanent bool `json:"permanent,omitempty"`
}

// Message is the envelope and delivery state of a queued message.
type Message struct {
	ID       string    `json:"id"`
	Received time.Time `json:"received"`
	From     string    `json:"from"` // the envelope sender; "" is the null sender
	// OrigFrom is the sender as received when From was rewritten (SRS).
	OrigFrom   string      `json:"orig_from,omitempty"`
	Recipients []Recipient `json:"recipients"`
	// Header is header fields written above the data when it is read
	// (Content): our Received field and what the decide steps added
	// (RFC 5321 §4.4: a trace field goes at the top). The data file holds
	// the message as the client sent it.
	Header string `json:"header,omitempty"`
	// Size is the size of the message with Header, in bytes.
	Size int64 `json:"size"`
	// Where it came from.
	ClientAddr string `json:"client_addr,omitempty"`
	Helo       string `json:"helo,omitempty"`
	AuthUser   string `json:"auth_user,omitempty"` // submission: the authenticated user
	// DSN parameters of the MAIL command (RFC 3461 §4).
	Ret   string `json:"ret,omitempty"`
	EnvID string `json:"envid,omitempty"`
	// Body is the BODY parameter (7BIT, 8BITMIME, BINARYMIME); SMTPUTF8 is
	// set when the client asked for it (RFC 6531).
	Body     string `json:"body,omitempty"`
	SMTPUTF8 bool   `json:"smtputf8,omitempty"`
	// RequireTLS is the REQUIRETLS parameter of the MAIL command (RFC
	// 8689 §4.1: the message is tagged as needing REQUIRETLS handling):
	// it goes only over TLS verified as an MTA-STS or DANE policy says,
	// to servers that offer REQUIRETLS, and with the parameter (§4.2.1).
	RequireTLS bool `json:"requiretls,omitempty"`
	// TLSRequiredNo is set when the header says "TLS-Required: No" (RFC
	// 8689 §3): the recipient domain's TLS policy is tried, but its
	// failures do not stop delivery (§4.2.2). REQUIRETLS wins: the field
	// is ignored while RequireTLS is set (§4.1).
	TLSRequiredNo bool `json:"tls_required_no,omitempty"`
	// TLSReport marks a TLS report of ours (RFC 8460): the TLS results of
	// its deliveries are left out of the reports, which would otherwise
	// beget reports every day.
	TLSReport bool `json:"tls_report,omitempty"`
}

// Done reports whether nothing is left to do: every recipient delivered,
// or failed with the sender told.
func (m *Message) Done() bool {
	for _, r := range m.Recipients {
		if r.Status == Pending || r.Status == Held || r.Status == Failed && !r.Bounced {
			return false
		}
	}
	return true
}

// ErrNotFound means no message has that ID.
var ErrNotFound = errors.New("no such message")

var idPattern = regexp.MustCompile(`^[0-9]{8}T[0-9]{6}-[0-9a-f]{12}$`)

// LazySync is the longest a lazy change (UpdateLazily, RemoveLazily) waits
// for a sync when no commit brings one sooner.
const LazySync = time.Second

// Store is a queue directory. Its methods may be called concurrently for
// different messages; updates to one message must come from one goroutine.
type Store struct {
	dir   string
	fs    fileSystem
	now   func() time.Time
	log   *slog.Logger
	group *group

	lazyMu      sync.Mutex
	lazyPending bool
}

// Option configures Open.
type Option func(*Store)

// WithLog makes Open log what it cleans up (by default nothing is logged).
func WithLog(l *slog.Logger) Option {
	return func(s *Store) { s.log = l }
}

// withFS makes the store use fsys (a simulated disk in tests).
func withFS(fsys fileSystem) Option {
	return func(s *Store) { s.fs = fsys }
}

func newStore(dir string, opts []Option) (*Store, error) {
	s := &Store{dir: dir, now: time.Now, log: slog.New(slog.DiscardHandler)}
	for _, o := range opts {
		o(s)
	}
	if s.fs == nil {
		fsys, err := newOSFS(dir)
		if err != nil {
			return nil, err
		}
		s.fs = fsys
	}
	s.group = newGroup(s.fs.SyncFS)
	return s, nil
}

// Open opens (creating it if needed) the queue in dir and cleans it up:
// it removes temporary files (interrupted Commits, never acknowledged),
// cuts what a crash left torn at the end of a file's records, converts
// the files of the former layout (<id>.json and <id>.msg), and renames
// the queue files that fail their checks to <id>.q.damaged, out of the
// queue: a crash leaves one only when it cut a Commit between its rename
// and its sync (never acknowledged), otherwise the disk damaged it and
// the operator may want it. Each change is logged (WithLog), damage as a
// warning.
func Open(dir string, opts ...Option) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("queue directory: %w", err)
	}
	s, err := newStore(dir, opts)
	if err != nil {
		return nil, err
	}
	names, err := s.fs.ReadDir()
	if err != nil {
		return nil, fmt.Errorf("queue directory: %w", err)
	}
	have := map[string]bool{}
	for _, n := range names {
		have[n] = true
	}
	changed := false
	// The former layout first: a conversion a crash cut is done again.
	converted, err := s.convert(names, have)
	if err != nil {
		return nil, err
	}
	changed = changed || converted
	if converted {
		if names, err = s.fs.ReadDir(); err != nil {
			return nil, fmt.Errorf("queue directory: %w", err)
		}
	}
	for _, name := range names {
		if strings.HasPrefix(name, ".") {
			if err := s.fs.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("queue cleanup: %w", err)
			}
			s.log.Info("queue cleanup: removed temporary file", "file", name)
			changed = true
			continue
		}
		id, ok := strings.CutSuffix(name, fileSuffix)
		if !ok || !idPattern.MatchString(id) {
			continue
		}
		fixed, err := s.check(name)
		if err != nil {
			return nil, err
		}
		changed = changed || fixed
	}
	if changed {
		if err := s.group.Wait(); err != nil {
			return nil, fmt.Errorf("queue cleanup: %w", err)
		}
	}
	return s, nil
}

// check reads queue file name whole at Open: one that fails its checks
// is put aside, torn records at its end are cut off. It reports whether
// it changed anything.
func (s *Store) check(name string) (bool, error) {
	f, err := s.fs.OpenFile(name, os.O_RDWR, 0)
	if err != nil {
		return false, fmt.Errorf("queue cleanup: %w", err)
	}
	defer f.Close()
	_, _, end, err := readFile(f, true)
	if errors.Is(err, errDamaged) {
		f.Close()
		if err := s.fs.Rename(name, name+".damaged"); err != nil {
			return false, fmt.Errorf("queue cleanup: %w", err)
		}
		s.log.Warn("queue cleanup: put aside a damaged queue file (a crash before its commit ended, or damage)", "file", name+".damaged", "err", err)
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("queue cleanup %s: %w", name, err)
	}
	size, err := f.Size()
	if err != nil {
		return false, fmt.Errorf("queue cleanup %s: %w", name, err)
	}
	if size == end {
		return false, nil
	}
	if err := f.Truncate(end); err != nil {
		return false, fmt.Errorf("queue cleanup %s: %w", name, err)
	}
	s.log.Info("queue cleanup: cut a torn state record", "file", name, "bytes", size-end)
	return true, nil
}

// Attach opens the queue in dir for a tool, leaving alone the temporary
// files of a server that may be writing into it.
func Attach(dir string) (*Store, error) {
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("queue directory: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("queue directory: %s is not a directory", dir)
	}
	return newStore(dir, nil)
}

// Dir returns the queue directory.
func (s *Store) Dir() string { return s.dir }

// Syncs returns how many syncs of the file system the store made.
func (s *Store) Syncs() uint64 { return s.group.Done() }

func (s *Store) newID() string {
	b := make([]byte, 6)
	rand.Read(b)
	return s.now().UTC().Format("20060102T150405") + "-" + hex.EncodeToString(b)
}

func (s *Store) name(id string) (string, error) {
	if !idPattern.MatchString(id) {
		return "", fmt.Errorf("%w: %q is not a queue ID", ErrNotFound, id)
	}
	return id + fileSuffix, nil
}

// Put stores a new message durably: data, then m (with ID, Received and
// Size filled in). When Put returns nil the message survives a crash.
func (s *Store) Put(m *Message, data io.Reader) error {
	in, err := s.Begin()
	if err != nil {
		return err
	}
	defer in.Abort()
	if _, err := io.Copy(in, data); err != nil {
		return fmt.Errorf("queue %s: writing the message: %w", in.ID(), err)
	}
	return s.Commit(in, m)
}

// Incoming is a message being written into the queue: it has its ID (to
// put in a Received header, say) but is not queued until Commit.
type Incoming struct {
	s    *Store
	id   string
	tmp  string
	f    file
	n    int64
	crc  uint32
	werr error
}

// Begin starts a new message. Write its data to the returned Incoming,
// then Commit it or Abort it.
func (s *Store) Begin() (*Incoming, error) {
	id := s.newID()
	tmp := "." + id + fileSuffix + ".tmp"
	f, err := s.fs.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("queue %s: %w", id, err)
	}
	// The data goes after the header, which Commit writes.
	return &Incoming{s: s, id: id, tmp: tmp, f: f}, nil
}

// ID returns the queue ID the message will have.
func (in *Incoming) ID() string { return in.id }

// Size returns the number of bytes written so far.
func (in *Incoming) Size() int64 { return in.n }

// Reader reads what was written so far, from the start: the decide steps
// read the spooled message through it instead of the network again.
func (in *Incoming) Reader() io.Reader {
	return io.NewSectionReader(in, 0, in.n)
}

// ReadAt reads what was written, at offset off.
func (in *Incoming) ReadAt(p []byte, off int64) (int, error) {
	if off >= in.n {
		return 0, io.EOF
	}
	if rest := in.n - off; int64(len(p)) > rest {
		n, err := in.f.ReadAt(p[:rest], headerSize+off)
		if err == nil {
			err = io.EOF
		}
		return n, err
	}
	return in.f.ReadAt(p, headerSize+off)
}

func (in *Incoming) Write(p []byte) (int, error) {
	if in.f == nil {
		return 0, fmt.Errorf("queue %s: already committed or aborted", in.id)
	}
	n, err := in.f.WriteAt(p, headerSize+in.n)
	in.n += int64(n)
	in.crc = crc32.Update(in.crc, crcTable, p[:n])
	if err != nil && in.werr == nil {
		in.werr = err
	}
	return n, err
}

// Abort discards the message; after Commit it does nothing.
func (in *Incoming) Abort() {
	if in.f != nil {
		in.f.Close()
		in.s.fs.Remove(in.tmp)
		in.f = nil
	}
}

// Commit durably queues the data written to in with the envelope m (its
// ID, Received and Size filled in). When Commit returns nil the message
// survives a crash: it returns after a sync that started once the file
// was in place. When it fails, nothing is queued: the client is told to
// send again (RFC 5321 §4.2.5), and a message left queued as well would
// be delivered twice.
func (s *Store) Commit(in *Incoming, m *Message) error {
	if in.f == nil {
		return fmt.Errorf("queue %s: already committed or aborted", in.id)
	}
	if in.s != s {
		return fmt.Errorf("queue %s: begun in another queue", in.id)
	}
	m.ID = in.id
	if m.Received.IsZero() {
		m.Received = s.now()
	}
	m.Size = int64(len(m.Header)) + in.n
	for i := range m.Recipients {
		if m.Recipients[i].Status == "" {
			m.Recipients[i].Status = Pending
		}
	}
	f := in.f
	in.f = nil
	err := in.werr
	if err == nil {
		err = writeTail(f, m, in.n, in.crc)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		s.fs.Remove(in.tmp)
		return fmt.Errorf("queue %s: %w", m.ID, err)
	}
	name, _ := s.name(m.ID)
	if err := s.fs.Rename(in.tmp, name); err != nil {
		s.fs.Remove(in.tmp)
		return fmt.Errorf("queue %s: %w", m.ID, err)
	}
	if err := s.group.Wait(); err != nil {
		err = fmt.Errorf("queue %s: %w", m.ID, err)
		// Maybe on disk, maybe not: take it out, durably, so that it is
		// not delivered after a restart as well as sent again.
		uerr := s.fs.Remove(name)
		if uerr == nil {
			uerr = s.group.Wait()
		}
		if uerr != nil {
			return errors.Join(err, fmt.Errorf("queue %s: undoing the commit: %w", m.ID, uerr))
		}
		return err
	}
	return nil
}

// writeTail writes the envelope after the n bytes of data (whose
// checksum is crc) and then the header.
func writeTail(f file, m *Message, n int64, crc uint32) error {
	env, err := json.Marshal(m)
	if err != nil {
		return err
	}
	if _, err := f.WriteAt(env, headerSize+n); err != nil {
		return err
	}
	h := fileHeader{dataLen: n, envLen: int64(len(env)), dataCRC: crc, envCRC: crc32.Checksum(env, crcTable)}
	_, err = f.WriteAt(h.marshal(), 0)
	return err
}

// Update durably records the delivery state of m (its recipients, and
// its REQUIRETLS and TLS-Required settings; the rest of a message does
// not change once committed): for an operator's command, say.
func (s *Store) Update(m *Message) error {
	if err := s.UpdateLazily(m); err != nil {
		return err
	}
	if err := s.group.Wait(); err != nil {
		return fmt.Errorf("queue %s: %w", m.ID, err)
	}
	return nil
}

// UpdateLazily records the delivery state of m as Update does, durably
// at the next sync (within LazySync): for the results of deliveries,
// which a crash may lose (see the package doc).
func (s *Store) UpdateLazily(m *Message) error {
	name, err := s.name(m.ID)
	if err != nil {
		return err
	}
	f, err := s.fs.OpenFile(name, os.O_RDWR, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return s.legacyUpdate(m)
	}
	if err != nil {
		return fmt.Errorf("queue %s: %w", m.ID, err)
	}
	defer f.Close()
	_, _, end, err := readFile(f, false)
	if err != nil {
		return fmt.Errorf("queue %s: %w", m.ID, err)
	}
	rec, err := marshalRecord(m)
	if err != nil {
		return fmt.Errorf("queue %s: %w", m.ID, err)
	}
	// A torn record after the valid ones (a crash, and no Open since:
	// a tool) goes, or it would hide this one.
	if size, err := f.Size(); err != nil {
		return fmt.Errorf("queue %s: %w", m.ID, err)
	} else if size != end {
		if err := f.Truncate(end); err != nil {
			return fmt.Errorf("queue %s: %w", m.ID, err)
		}
	}
	if _, err := f.WriteAt(rec, end); err != nil {
		return fmt.Errorf("queue %s: %w", m.ID, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("queue %s: %w", m.ID, err)
	}
	s.syncSoon()
	return nil
}

// Sync makes every change made so far durable.
func (s *Store) Sync() error { return s.group.Wait() }

// syncSoon makes sure a sync starts within LazySync.
func (s *Store) syncSoon() {
	s.lazyMu.Lock()
	defer s.lazyMu.Unlock()
	if s.lazyPending {
		return
	}
	s.lazyPending = true
	since := s.group.Started()
	time.AfterFunc(LazySync, func() {
		s.lazyMu.Lock()
		s.lazyPending = false
		s.lazyMu.Unlock()
		if s.group.Done() > since {
			return // a sync that started after the change ended: it covered it
		}
		if err := s.group.Wait(); err != nil {
			s.log.Error("queue sync", "err", err)
		}
	})
}

// Get reads the envelope and delivery state of a message.
func (s *Store) Get(id string) (*Message, error) {
	name, err := s.name(id)
	if err != nil {
		return nil, err
	}
	f, err := s.fs.OpenFile(name, os.O_RDONLY, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return s.legacyGet(id)
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	m, _, _, err := readFile(f, false)
	if err != nil {
		return nil, fmt.Errorf("queue %s: %w", id, err)
	}
	if m.ID != id {
		return nil, fmt.Errorf("queue %s: the envelope says it is %q", id, m.ID)
	}
	return m, nil
}

// Data reads a queued message as it goes out: its Header (our Received
// field, and what the decide steps added), then the data as received.
// The data is checked against its checksum as it is read: a damaged
// message fails with an error at its end instead of io.EOF.
func (s *Store) Data(id string) (io.ReadCloser, error) {
	name, err := s.name(id)
	if err != nil {
		return nil, err
	}
	f, err := s.fs.OpenFile(name, os.O_RDONLY, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return s.legacyData(id)
	}
	if err != nil {
		return nil, err
	}
	m, h, _, err := readFile(f, false)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("queue %s: %w", id, err)
	}
	return dataReader(f, id, m.Header, h), nil
}

// dataReader reads a message as it goes out from its open file f: header,
// then the data, checked against its checksum; closing it closes f.
func dataReader(f file, id, header string, h fileHeader) io.ReadCloser {
	data := &checkedReader{r: io.NewSectionReader(f, headerSize, h.dataLen), crc: crc32.New(crcTable), want: h.dataCRC, id: id}
	return struct {
		io.Reader
		io.Closer
	}{io.MultiReader(strings.NewReader(header), data), f}
}

// DataOf is Data for a message read with Get: its Header taken from m,
// only the file's header read again (delivery reads the message's state
// and then its data; the envelope is not decoded twice).
func (s *Store) DataOf(m *Message) (io.ReadCloser, error) {
	name, err := s.name(m.ID)
	if err != nil {
		return nil, err
	}
	f, err := s.fs.OpenFile(name, os.O_RDONLY, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return s.legacyData(m.ID)
	}
	if err != nil {
		return nil, err
	}
	h, err := readHeader(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("queue %s: %w", m.ID, err)
	}
	return dataReader(f, m.ID, m.Header, h), nil
}

// Remove durably deletes a message.
func (s *Store) Remove(id string) error {
	if err := s.RemoveLazily(id); err != nil {
		return err
	}
	if err := s.group.Wait(); err != nil {
		return fmt.Errorf("queue %s: %w", id, err)
	}
	return nil
}

// RemoveLazily deletes a message, durably at the next sync (within
// LazySync): for a message delivered, which a crash may then deliver
// again (see the package doc).
func (s *Store) RemoveLazily(id string) error {
	name, err := s.name(id)
	if err != nil {
		return err
	}
	err = s.fs.Remove(name)
	if errors.Is(err, fs.ErrNotExist) {
		return s.legacyRemove(id)
	}
	if err != nil {
		return err
	}
	s.syncSoon()
	return nil
}

// List returns every queued message, oldest first. Messages that cannot
// be read are reported in the error (joined), and the others still listed:
// a damaged file must not hide the rest of the queue.
func (s *Store) List() ([]*Message, error) {
	names, err := s.fs.ReadDir()
	if err != nil {
		return nil, err
	}
	have := map[string]bool{}
	for _, n := range names {
		have[n] = true
	}
	var msgs []*Message
	var errs []error
	for _, n := range names {
		id, ok := strings.CutSuffix(n, fileSuffix)
		if !ok {
			// The former layout, not converted yet (a tool before the
			// server's first start).
			if id, ok = strings.CutSuffix(n, ".json"); !ok || have[id+fileSuffix] {
				continue
			}
		}
		if !idPattern.MatchString(id) {
			continue
		}
		m, err := s.Get(id)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		msgs = append(msgs, m)
	}
	sort.Slice(msgs, func(i, j int) bool { return msgs[i].ID < msgs[j].ID })
	return msgs, errors.Join(errs...)
}
