// Package queue is Elit's durable message store, between receiving and
// delivering. A message is two files in one directory:
//
//	<id>.msg   the message as received (with our Received header)
//	<id>.json  its envelope and per-recipient delivery state, readable by eye
//
// Each is written to a temporary file, fsynced, renamed into place
// (renameio) and the directory fsynced, the data first: a message is in the
// queue exactly when its .json exists, so a server may answer 250 after DATA
// (RFC 5321 §4.1.1.4, "the receiver MUST NOT lose the message") as soon as
// Put returns. Open removes what an interrupted Put left (temporary files,
// data without an envelope), which was never acknowledged, and envelopes
// without data, which only a failed Commit or damage leaves.
//
// The store holds state; scheduling deliveries is the deliverer's job.
package queue

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/google/renameio/v2"
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

// Store is a queue directory. Its methods may be called concurrently for
// different messages; updates to one message must come from one goroutine.
type Store struct {
	dir string
	now func() time.Time
	log *slog.Logger
	// syncDir makes the directory's entries durable (fsyncDir; a test
	// makes it fail).
	syncDir func(dir string) error
}

// Option configures Open.
type Option func(*Store)

// WithLog makes Open log what it cleans up (by default nothing is logged).
func WithLog(l *slog.Logger) Option {
	return func(s *Store) { s.log = l }
}

func newStore(dir string, opts []Option) *Store {
	s := &Store{dir: dir, now: time.Now, log: slog.New(slog.DiscardHandler), syncDir: fsyncDir}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Open opens (creating it if needed) the queue in dir and removes what
// interrupted Puts left behind (temporary files, data without an
// envelope: never acknowledged) and envelopes without data, which are
// no message: only a failed Commit (whose client was told to send again)
// or damage leaves them. Each removal is logged (WithLog); an envelope
// without data is a warning, since damage may have lost a message.
func Open(dir string, opts ...Option) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("queue directory: %w", err)
	}
	s := newStore(dir, opts)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("queue directory: %w", err)
	}
	have := map[string]bool{}
	for _, e := range entries {
		have[e.Name()] = true
	}
	removed := false
	for _, e := range entries {
		name := e.Name()
		var what string
		if id, ok := strings.CutSuffix(name, ".msg"); ok && !have[id+".json"] {
			what = "data without an envelope"
		} else if id, ok := strings.CutSuffix(name, ".json"); ok && idPattern.MatchString(id) && !have[id+".msg"] {
			what = "envelope without data"
		} else if strings.HasPrefix(name, ".") {
			what = "temporary file"
		} else {
			continue
		}
		if err := os.Remove(filepath.Join(dir, name)); err != nil {
			return nil, fmt.Errorf("queue cleanup: %w", err)
		}
		removed = true
		if what == "envelope without data" {
			s.log.Warn("queue cleanup: removed an envelope without data (a failed commit, or damage)", "file", name)
		} else {
			s.log.Info("queue cleanup: removed "+what, "file", name)
		}
	}
	if removed {
		if err := s.syncDir(dir); err != nil {
			return nil, err
		}
	}
	return s, nil
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
	return newStore(dir, nil), nil
}

// Dir returns the queue directory.
func (s *Store) Dir() string { return s.dir }

func (s *Store) newID() string {
	b := make([]byte, 6)
	rand.Read(b)
	return s.now().UTC().Format("20060102T150405") + "-" + hex.EncodeToString(b)
}

func (s *Store) path(id, ext string) (string, error) {
	if !idPattern.MatchString(id) {
		return "", fmt.Errorf("%w: %q is not a queue ID", ErrNotFound, id)
	}
	return filepath.Join(s.dir, id+ext), nil
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
	id string
	f  *renameio.PendingFile
	n  int64
}

// Begin starts a new message. Write its data to the returned Incoming,
// then Commit it or Abort it.
func (s *Store) Begin() (*Incoming, error) {
	id := s.newID()
	dataPath, _ := s.path(id, ".msg")
	f, err := renameio.NewPendingFile(dataPath, renameio.WithPermissions(0o600))
	if err != nil {
		return nil, fmt.Errorf("queue %s: %w", id, err)
	}
	return &Incoming{id: id, f: f}, nil
}

// ID returns the queue ID the message will have.
func (in *Incoming) ID() string { return in.id }

// Size returns the number of bytes written so far.
func (in *Incoming) Size() int64 { return in.n }

// Reader reads what was written so far, from the start: the decide steps
// read the spooled message through it instead of the network again.
func (in *Incoming) Reader() io.Reader {
	return io.NewSectionReader(in.f, 0, in.n)
}

// ReadAt reads what was written, at offset off.
func (in *Incoming) ReadAt(p []byte, off int64) (int, error) {
	if off >= in.n {
		return 0, io.EOF
	}
	if rest := in.n - off; int64(len(p)) > rest {
		n, err := in.f.ReadAt(p[:rest], off)
		if err == nil {
			err = io.EOF
		}
		return n, err
	}
	return in.f.ReadAt(p, off)
}

func (in *Incoming) Write(p []byte) (int, error) {
	n, err := in.f.Write(p)
	in.n += int64(n)
	return n, err
}

// Abort discards the message; after Commit it does nothing.
func (in *Incoming) Abort() {
	if in.f != nil {
		in.f.Cleanup()
		in.f = nil
	}
}

// Commit durably queues the data written to in with the envelope m (its
// ID, Received and Size filled in). When Commit returns nil the message
// survives a crash; when it fails, nothing is queued: the client is told
// to send again (RFC 5321 §4.2.5), and a message left queued as well
// would be delivered twice.
func (s *Store) Commit(in *Incoming, m *Message) error {
	if in.f == nil {
		return fmt.Errorf("queue %s: already committed or aborted", in.id)
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
	defer f.Cleanup()
	if err := f.CloseAtomicallyReplace(); err != nil {
		return fmt.Errorf("queue %s: %w", m.ID, err)
	}
	if err := s.writeEnvelope(m); err != nil {
		// The envelope may be in place (renamed, the directory sync then
		// failed): it goes first, then the data, as in Remove.
		if uerr := s.unqueue(m.ID); uerr != nil {
			return errors.Join(err, fmt.Errorf("queue %s: undoing the commit: %w", m.ID, uerr))
		}
		return err
	}
	return nil
}

// unqueue removes what there is of a message, the envelope first, and
// syncs the directory.
func (s *Store) unqueue(id string) error {
	var errs []error
	for _, ext := range []string{".json", ".msg"} {
		path, _ := s.path(id, ext)
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if err := s.syncDir(s.dir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Update durably replaces the envelope and delivery state of m.
func (s *Store) Update(m *Message) error {
	if _, err := s.path(m.ID, ".json"); err != nil {
		return err
	}
	return s.writeEnvelope(m)
}

func (s *Store) writeEnvelope(m *Message) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("queue %s: %w", m.ID, err)
	}
	path, _ := s.path(m.ID, ".json")
	if err := renameio.WriteFile(path, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("queue %s: %w", m.ID, err)
	}
	if err := s.syncDir(s.dir); err != nil {
		return fmt.Errorf("queue %s: %w", m.ID, err)
	}
	return nil
}

// Get reads the envelope of a message.
func (s *Store) Get(id string) (*Message, error) {
	path, err := s.path(id, ".json")
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
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

// Data reads a queued message as it goes out: its Header (our Received
// field, and what the decide steps added), then the data as received.
func (s *Store) Data(id string) (io.ReadCloser, error) {
	f, err := s.dataFile(id)
	if err != nil {
		return nil, err
	}
	m, err := s.Get(id)
	if err != nil {
		f.Close()
		return nil, err
	}
	if m.Header == "" {
		return f, nil
	}
	return struct {
		io.Reader
		io.Closer
	}{io.MultiReader(strings.NewReader(m.Header), f), f}, nil
}

// dataFile opens the data file of a queued message: the message as
// received, without its Header.
func (s *Store) dataFile(id string) (*os.File, error) {
	path, err := s.path(id, ".msg")
	if err != nil {
		return nil, err
	}
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	return f, err
}

// Remove deletes a message: the envelope first, so that a crash in between
// leaves an orphan that Open removes, never an envelope without data.
func (s *Store) Remove(id string) error {
	jsonPath, err := s.path(id, ".json")
	if err != nil {
		return err
	}
	if err := os.Remove(jsonPath); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%w: %s", ErrNotFound, id)
		}
		return err
	}
	dataPath, _ := s.path(id, ".msg")
	if err := os.Remove(dataPath); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return s.syncDir(s.dir)
}

// List returns every queued message, oldest first. Envelopes that cannot
// be read are reported in the error (joined), and the others still listed:
// a damaged file must not hide the rest of the queue.
func (s *Store) List() ([]*Message, error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, err
	}
	var msgs []*Message
	var errs []error
	for _, e := range entries {
		id, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || !idPattern.MatchString(id) {
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

// fsyncDir makes a directory's entries durable.
func fsyncDir(dir string) error {
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
