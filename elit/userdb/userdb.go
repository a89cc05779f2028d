// Package userdb reads Elit's user database: a JSON array in which each
// entry is a user (a login, when it has a password) and an address at a mail
// domain that forwards to its mailboxes (several mailboxes make a list).
//
// The Elit v1 schema is accepted exactly:
//
//	[{"name": "din", "password": "<hex BLAKE2b-512>", "mailboxes": ["Romain <romain@example.org>"]}]
//
// with optional extensions:
//
//   - "password" may also be a PHC argon2id hash ($argon2id$v=19$...) or a
//     bcrypt hash; without a password the entry is a list and cannot log in;
//   - "scram-sha-256" and "scram-sha-1" hold SCRAM secrets in PostgreSQL's
//     format (SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>), so that
//     SCRAM works without storing the password (RFC 5802, RFC 7677);
//   - "cram-md5" holds the HMAC-MD5 states (CRAM-MD5$<hex>, RFC 2195);
//   - "name" may be domain-qualified (bob@other.org) for another domain.
//
// Unknown members are errors, as in v1 (a misspelt "mailbox" must not
// silently make a user without mailboxes).
package userdb

import (
	"bufio"
	"bytes"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"os"
	"slices"
	"sort"
	"strings"

	"elit.local/elit/blockdev"
	"elit.local/elit/mailaddr"
	"elit.local/oneffs"
)

// Errors from Expand.
var (
	ErrUnknown = errors.New("no such user")
	ErrLoop    = errors.New("alias loop")
)

// User is one entry of the database.
type User struct {
	Name      string   // the login: the local part, or local@domain for another domain
	Address   string   // local@domain, canonical (see mailaddr.Address.Canonical: A-labels)
	Mailboxes []string // addr-specs the address forwards to, in order

	entry    int // index in the JSON array
	password passwordHash
	scram    map[string]*ScramSecret
	cram     *cramSecret
}

// CanLogin reports whether the user has any secret to log in with.
func (u *User) CanLogin() bool { return u.password != nil || len(u.scram) > 0 || u.cram != nil }

// Scram returns the user's secret for "SCRAM-SHA-256" or "SCRAM-SHA-1".
func (u *User) Scram(mechanism string) (*ScramSecret, bool) {
	s, ok := u.scram[strings.TrimSuffix(mechanism, "-PLUS")]
	return s, ok
}

// CheckCRAMMD5 checks a CRAM-MD5 response (the hex digest) to a challenge.
func (u *User) CheckCRAMMD5(challenge, response []byte) bool {
	if u.cram == nil {
		return false
	}
	return subtle.ConstantTimeCompare(u.cram.response(challenge), bytes.ToLower(response)) == 1
}

// DB is a parsed user database. It is not changed after Parse, so it is
// safe for concurrent use.
type DB struct {
	domain string
	// domains are the local domains as first written, by canonical form
	// (mailaddr.CanonicalDomain: U-labels and A-labels are one domain).
	domains map[string]string
	users   map[string]*User // by canonical address
	order   []*User
	dummy   passwordHash
	mechs   []string // see Mechanisms
	// Warnings are problems that did not make the database invalid.
	Warnings []Problem
}

// Problem is something wrong with one entry (Entry is its index in the
// array, from 0) or with the whole file (Entry is -1).
type Problem struct {
	Entry   int
	Name    string
	Err     error
	Warning bool
}

func (p Problem) String() string {
	var b strings.Builder
	if p.Warning {
		b.WriteString("warning: ")
	}
	if p.Entry >= 0 {
		fmt.Fprintf(&b, "entry %d", p.Entry)
		if p.Name != "" {
			fmt.Fprintf(&b, " (%q)", p.Name)
		}
		b.WriteString(": ")
	}
	b.WriteString(p.Err.Error())
	return b.String()
}

// Error is returned by Parse for an invalid database: every problem found,
// warnings included.
type Error struct{ Problems []Problem }

func (e *Error) Error() string {
	var errs []string
	for _, p := range e.Problems {
		if !p.Warning {
			errs = append(errs, p.String())
		}
	}
	if len(errs) == 1 {
		return "invalid user database: " + errs[0]
	}
	return fmt.Sprintf("invalid user database: %d problems, first: %s", len(errs), errs[0])
}

// entry is the JSON form of a user.
type entry struct {
	Name        *string   `json:"name"`
	Password    *string   `json:"password"`
	Mailboxes   *[]string `json:"mailboxes"`
	ScramSHA256 *string   `json:"scram-sha-256"`
	ScramSHA1   *string   `json:"scram-sha-1"`
	CramMD5     *string   `json:"cram-md5"`
}

// Parse decodes and checks a database. Unqualified names are at domain;
// extra domains are local too (names like bob@other.org add theirs). It
// returns an *Error listing every problem when the database is invalid;
// one without entries (no data, blanks, []) is invalid.
func Parse(data []byte, domain string, extra ...string) (*DB, error) {
	d, err := mailaddr.ParseDomain(domain)
	if err != nil {
		return nil, fmt.Errorf("mail domain: %w", err)
	}
	db := &DB{domain: d, domains: map[string]string{domainKey(d): d}, users: map[string]*User{}}
	for _, x := range extra {
		xd, err := mailaddr.ParseDomain(x)
		if err != nil {
			return nil, fmt.Errorf("mail domain: %w", err)
		}
		db.addDomain(xd)
	}
	var problems []Problem
	add := func(i int, name string, warning bool, format string, args ...any) {
		problems = append(problems, Problem{Entry: i, Name: name, Err: fmt.Errorf(format, args...), Warning: warning})
	}
	entries, entryErrs, err := decodeEntries(data)
	if err != nil {
		return nil, &Error{Problems: []Problem{{Entry: -1, Err: err}}}
	}
	for i, e := range entries {
		if entryErrs[i] != nil {
			add(i, "", false, "%v", entryErrs[i])
			continue
		}
		u, errs := db.user(e)
		u.entry = i
		for _, err := range errs {
			add(i, u.Name, false, "%v", err)
		}
		if len(errs) > 0 {
			continue
		}
		if old := db.users[u.Address]; old != nil {
			// v1 merged the mailboxes of a repeated name, the later password winning.
			add(i, u.Name, true, "%s is also defined by an earlier entry: mailboxes merged, this entry's secrets used", u.Address)
			for _, m := range u.Mailboxes {
				if !slices.Contains(old.Mailboxes, m) {
					old.Mailboxes = append(old.Mailboxes, m)
				}
			}
			if u.CanLogin() {
				old.password, old.scram, old.cram = u.password, u.scram, u.cram
			}
			continue
		}
		db.users[u.Address] = u
		db.order = append(db.order, u)
	}
	for _, u := range db.order {
		// Only forwards to local addresses can loop or dangle.
		if db.hasLocalMailbox(u) {
			if _, err := db.Expand(u.Address); err != nil {
				add(u.entry, u.Name, false, "%v", err)
			}
		}
		if len(u.Mailboxes) == 0 {
			add(u.entry, u.Name, true, "no mailboxes: mail to %s cannot be delivered", u.Address)
		}
	}
	db.dummy = dummyHash
	for _, u := range db.order {
		if u.password != nil {
			db.dummy = dummyLike(u.password)
			break
		}
	}
	db.mechs = db.mechanisms()
	sort.SliceStable(problems, func(a, b int) bool { return problems[a].Entry < problems[b].Entry })
	for _, p := range problems {
		if !p.Warning {
			return nil, &Error{Problems: problems}
		}
	}
	db.Warnings = problems
	return db, nil
}

// errNoEntries refuses a database without entries: loaded, it would
// refuse every address and every login (an emptied file or an unset
// partition is a mistake, not a wish to close the domain).
var errNoEntries = errors.New("the user database has no entries")

// decodeEntries decodes the JSON array one entry at a time, strictly
// (unknown members are errors). An entry that does not decode is reported
// in entryErrs and the others are still decoded; only broken JSON syntax
// or an empty array (or no data at all) stops the whole file.
func decodeEntries(data []byte) (entries []entry, entryErrs []error, err error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, nil, errNoEntries
	}
	notArray := func(err error) error { return fmt.Errorf("not a JSON array of users: %w", err) }
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if tok, err := dec.Token(); err != nil {
		return nil, nil, notArray(err)
	} else if tok != json.Delim('[') {
		return nil, nil, notArray(fmt.Errorf("starts with %v", tok))
	}
	for dec.More() {
		var e entry
		err := dec.Decode(&e)
		var se *json.SyntaxError
		if errors.As(err, &se) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, nil, notArray(err)
		}
		entries = append(entries, e)
		entryErrs = append(entryErrs, err)
	}
	if _, err := dec.Token(); err != nil { // the closing bracket
		return nil, nil, notArray(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, nil, notArray(errors.New("data after the array"))
	}
	if len(entries) == 0 {
		return nil, nil, errNoEntries
	}
	return entries, entryErrs, nil
}

// user builds a User from an entry, returning every problem with it.
func (db *DB) user(e entry) (*User, []error) {
	var errs []error
	u := &User{}
	if e.Name == nil {
		errs = append(errs, errors.New(`"name" is missing`))
	} else {
		u.Name = *e.Name
		addr, err := db.nameAddress(*e.Name)
		if err != nil {
			errs = append(errs, fmt.Errorf("name: %w", err))
		}
		u.Address = addr
	}
	if e.Mailboxes == nil {
		errs = append(errs, errors.New(`"mailboxes" is missing (use [] for none)`))
	} else {
		for j, m := range *e.Mailboxes {
			addr, err := parseMailbox(m)
			if err != nil {
				errs = append(errs, fmt.Errorf("mailboxes[%d]: %w", j, err))
				continue
			}
			if !slices.Contains(u.Mailboxes, addr) {
				u.Mailboxes = append(u.Mailboxes, addr)
			}
		}
	}
	if e.Password != nil {
		h, err := parsePassword(*e.Password)
		if err != nil {
			errs = append(errs, fmt.Errorf("password: %w", err))
		}
		u.password = h
	}
	for _, s := range []struct {
		mech string
		val  *string
	}{{"SCRAM-SHA-256", e.ScramSHA256}, {"SCRAM-SHA-1", e.ScramSHA1}} {
		if s.val == nil {
			continue
		}
		sec, err := parseScram(s.mech, *s.val)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if u.scram == nil {
			u.scram = map[string]*ScramSecret{}
		}
		u.scram[s.mech] = sec
	}
	if e.CramMD5 != nil {
		c, err := parseCram(*e.CramMD5)
		if err != nil {
			errs = append(errs, err)
		}
		u.cram = c
	}
	return u, errs
}

// nameAddress turns a name into a canonical address: a local part at the
// default domain, or a domain-qualified name, whose domain becomes local.
func (db *DB) nameAddress(name string) (string, error) {
	err := mailaddr.CheckLocalPart(name)
	if err == nil {
		return mailaddr.Address{Local: name, Domain: db.domain}.Canonical(), nil
	}
	if !strings.Contains(name, "@") {
		return "", err
	}
	a, err := mailaddr.Parse(name)
	if err != nil {
		return "", err
	}
	if strings.HasPrefix(a.Domain, "[") {
		return "", errors.New("an address literal is not a mail domain")
	}
	db.addDomain(a.Domain)
	return a.Canonical(), nil
}

// domainKey returns the form domains are compared in (see
// mailaddr.CanonicalDomain), or "" for what is not a domain.
func domainKey(d string) string {
	k, err := mailaddr.CanonicalDomain(d)
	if err != nil {
		return ""
	}
	return k
}

// addDomain makes d (as ParseDomain returns it) a local domain.
func (db *DB) addDomain(d string) {
	if k := domainKey(d); k != "" && db.domains[k] == "" {
		db.domains[k] = d
	}
}

func (db *DB) hasLocalMailbox(u *User) bool {
	for _, m := range u.Mailboxes {
		if db.IsLocalDomain(m[strings.LastIndexByte(m, '@')+1:]) {
			return true
		}
	}
	return false
}

// parseMailbox parses an RFC 5322 mailbox ("a@b" or "Name <a@b>") and
// returns its addr-spec, which must also be a valid SMTP address.
func parseMailbox(s string) (string, error) {
	spec := s
	if strings.ContainsAny(s, "<>\"() \t\\,;:") {
		// Not a bare addr-spec (as most are): needs the RFC 5322 parser.
		m, err := mail.ParseAddress(s)
		if err != nil {
			return "", fmt.Errorf("%q: %w", s, err)
		}
		spec = m.Address
	}
	a, err := mailaddr.Parse(spec)
	if err != nil {
		return "", fmt.Errorf("%q: %w", s, err)
	}
	return a.String(), nil
}

// Domain returns the default mail domain.
func (db *DB) Domain() string { return db.domain }

// Domains returns every domain the database has addresses at, as first
// written, sorted.
func (db *DB) Domains() []string {
	var ds []string
	for _, d := range db.domains {
		ds = append(ds, d)
	}
	sort.Strings(ds)
	return ds
}

// IsLocalDomain reports whether the database has addresses at domain, in
// any case and in U-label or A-label form.
func (db *DB) IsLocalDomain(domain string) bool {
	k := domainKey(domain)
	return k != "" && db.domains[k] != ""
}

// Len returns the number of users.
func (db *DB) Len() int { return len(db.order) }

// Users returns the users in database order.
func (db *DB) Users() []*User { return slices.Clone(db.order) }

// Lookup returns the user with an address (local@domain), or nil.
func (db *DB) Lookup(address string) *User {
	a, err := mailaddr.Parse(address)
	if err != nil {
		return nil
	}
	return db.users[a.Canonical()]
}

// Login returns the user a login name names: a bare name is at the default
// domain, name@domain at that domain. It returns nil for none.
func (db *DB) Login(name string) *User {
	if !strings.Contains(name, "@") {
		name += "@" + db.domain
	}
	return db.Lookup(name)
}

// Authenticate checks a login and password (PLAIN, LOGIN). An unknown login
// costs a hash verification too, so that timing does not reveal which
// logins exist.
func (db *DB) Authenticate(login, password string) (*User, bool) {
	u := db.Login(login)
	if u == nil || u.password == nil {
		db.dummy.verify(password)
		return nil, false
	}
	if !u.password.verify(password) {
		return nil, false
	}
	return u, true
}

// Mechanisms returns the SASL mechanisms some user has secrets for, the
// strongest first. Offering one that no user can use would only invite
// failed attempts. (Worked out once by Parse: every EHLO asks.)
func (db *DB) Mechanisms() []string { return slices.Clone(db.mechs) }

func (db *DB) mechanisms() []string {
	var hasPw, has256, has1, hasCram bool
	for _, u := range db.order {
		hasPw = hasPw || u.password != nil
		has256 = has256 || u.scram["SCRAM-SHA-256"] != nil
		has1 = has1 || u.scram["SCRAM-SHA-1"] != nil
		hasCram = hasCram || u.cram != nil
	}
	var m []string
	if has256 {
		m = append(m, "SCRAM-SHA-256-PLUS", "SCRAM-SHA-256")
	}
	if has1 {
		m = append(m, "SCRAM-SHA-1")
	}
	if hasCram {
		m = append(m, "CRAM-MD5")
	}
	if hasPw {
		m = append(m, "PLAIN", "LOGIN")
	}
	return m
}

// Mechanisms returns the SASL mechanisms u's secrets allow, the strongest
// first, as DB.Mechanisms names them; none when u cannot log in. It says
// which, never what the secrets are (the status page shows it).
func (u *User) Mechanisms() []string {
	var m []string
	if u.scram["SCRAM-SHA-256"] != nil {
		m = append(m, "SCRAM-SHA-256-PLUS", "SCRAM-SHA-256")
	}
	if u.scram["SCRAM-SHA-1"] != nil {
		m = append(m, "SCRAM-SHA-1")
	}
	if u.cram != nil {
		m = append(m, "CRAM-MD5")
	}
	if u.password != nil {
		m = append(m, "PLAIN", "LOGIN")
	}
	return m
}

// CanSendAs reports whether u may use address as its envelope or header
// sender: its own address, or an address of the database that forwards to
// u (a list u is a member of: its mailboxes include u's address or one of
// u's mailboxes).
func (db *DB) CanSendAs(u *User, address string) bool {
	a, err := mailaddr.Parse(address)
	if err != nil {
		return false
	}
	key := a.Canonical()
	if key == u.Address {
		return true
	}
	alias := db.users[key]
	if alias == nil {
		return false
	}
	mine := map[string]bool{u.Address: true}
	for _, m := range u.Mailboxes {
		if ma, err := mailaddr.Parse(m); err == nil {
			mine[ma.Canonical()] = true
		}
	}
	for _, m := range alias.Mailboxes {
		if ma, err := mailaddr.Parse(m); err == nil && mine[ma.Canonical()] {
			return true
		}
	}
	return false
}

// Expand returns the mailboxes mail to a local address goes to: local
// addresses among them expanded in turn, duplicates removed, in order. It
// returns ErrUnknown for an address at a local domain that has no user,
// and ErrLoop when expansion comes back to an address it is expanding.
func (db *DB) Expand(address string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	var walk func(addr string, path []string) error
	walk = func(addr string, path []string) error {
		a, err := mailaddr.Parse(addr)
		if err != nil {
			return err
		}
		key := a.Canonical()
		if !db.IsLocalDomain(a.Domain) {
			if !seen[key] {
				seen[key] = true
				out = append(out, addr)
			}
			return nil
		}
		if slices.Contains(path, key) {
			return fmt.Errorf("%w: %s", ErrLoop, strings.Join(append(path, key), " → "))
		}
		u := db.users[key]
		if u == nil {
			if len(path) == 0 {
				return fmt.Errorf("%w: %s", ErrUnknown, addr)
			}
			return fmt.Errorf("%w: %s (a mailbox of %s)", ErrUnknown, addr, path[len(path)-1])
		}
		if seen[key] {
			return nil
		}
		seen[key] = true
		path = append(path, key)
		for _, m := range u.Mailboxes {
			if err := walk(m, path); err != nil {
				return err
			}
		}
		return nil
	}
	if err := walk(address, nil); err != nil {
		return nil, err
	}
	return out, nil
}

// dummyLike returns a hash of the same kind and cost as h, for Authenticate.
func dummyLike(h passwordHash) passwordHash {
	switch h := h.(type) {
	case blake2bHash:
		return blake2bHash(make([]byte, len(h)))
	case *argon2idHash:
		return &argon2idHash{memory: h.memory, time: h.time, threads: h.threads, salt: make([]byte, len(h.salt)), key: make([]byte, len(h.key))}
	case bcryptHash:
		return h // verifying a wrong password against a real bcrypt hash costs the same
	}
	return dummyHash
}

// ReadSource reads a database from a plain JSON file or from a OneFFS image
// or partition (detected: a regular file whose first non-blank byte is '['
// is JSON). A partition may be named "partname:NAME" or "partuuid:UUID"
// (blockdev.Find). opts apply to OneFFS (e.g. the sector size).
func ReadSource(path string, opts ...oneffs.Option) ([]byte, error) {
	path, err := sourcePath(path)
	if err != nil {
		return nil, err
	}
	isJSON, err := looksLikeJSON(path)
	if err != nil {
		return nil, err
	}
	if isJSON {
		return os.ReadFile(path)
	}
	im, err := oneffs.Open(path, append(opts, oneffs.WithReadOnly())...)
	if err != nil {
		return nil, err
	}
	defer im.Close()
	data, err := im.Read()
	if errors.Is(err, oneffs.ErrUnset) {
		return nil, nil // no data: Parse refuses it as a database without entries
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return data, nil
}

// sourcePath resolves a partname:/partuuid: source to its device.
func sourcePath(path string) (string, error) {
	if blockdev.IsSpec(path) {
		return blockdev.Find("/sys", path)
	}
	return path, nil
}

// looksLikeJSON reports whether path is a regular file that is blank or
// whose first non-blank byte is '[', reading no further than that byte.
func looksLikeJSON(path string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		return false, err
	}
	r := bufio.NewReader(f)
	for {
		c, err := r.ReadByte()
		switch {
		case err == io.EOF:
			return true, nil
		case err != nil:
			return false, err
		case c != ' ' && c != '\t' && c != '\n' && c != '\r':
			return c == '[', nil
		}
	}
}
