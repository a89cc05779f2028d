package userdb

import (
	"crypto/hmac"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// demoDigest is the hex BLAKE2b-512 digest of "demo" (the v1 format).
const demoDigest = "ac6a680d94b3f2331f9a9e02397c14fa08e0e4f4c07527e311aa60c3753450f23b408af9b31491dbfad20171fb044544ad604dc5ad6bcb3a00818ec24ab19c00"

func mustParse(t *testing.T, js string) *DB {
	t.Helper()
	db, err := Parse([]byte(js), "example.org")
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return db
}

func TestV1Database(t *testing.T) {
	db := mustParse(t, `[{"name":"din","password":"`+demoDigest+`","mailboxes":["Romain <romain@example.com>"]}]`)
	if u, ok := db.Authenticate("din", "demo"); !ok || u.Address != "din@example.org" {
		t.Errorf("din/demo: %v %v", u, ok)
	}
	for _, c := range [][2]string{{"din", "Demo"}, {"din", ""}, {"nobody", "demo"}, {"din@other.org", "demo"}} {
		if _, ok := db.Authenticate(c[0], c[1]); ok {
			t.Errorf("%s/%q accepted", c[0], c[1])
		}
	}
	if got, err := db.Expand("DIN@Example.ORG"); err != nil || !slices.Equal(got, []string{"romain@example.com"}) {
		t.Errorf("Expand: %q %v", got, err)
	}
	if m := db.Mechanisms(); !slices.Equal(m, []string{"PLAIN", "LOGIN"}) {
		t.Errorf("mechanisms %q", m)
	}
}

// The example database of the OneFFS vectors has "password": "xxxxxx",
// which Elit v1 rejects as an invalid database; so do we, saying where.
func TestVectorDatabaseRejected(t *testing.T) {
	b, err := os.ReadFile("../../../shared/oneffs/vectors/inputs/database.json")
	if err != nil {
		t.Fatal(err)
	}
	_, err = Parse(b, "example.org")
	var e *Error
	if !errors.As(err, &e) || len(e.Problems) != 1 || e.Problems[0].Entry != 0 || !strings.Contains(e.Problems[0].String(), "password") {
		t.Fatalf("%v", err)
	}
	if got := e.Problems[0].String(); !strings.HasPrefix(got, `entry 0 ("din"): password: `) {
		t.Errorf("problem %q", got)
	}
}

func TestDemoDatabase(t *testing.T) {
	b, err := os.ReadFile("../../appliance/demo/users.json")
	if err != nil {
		t.Fatal(err)
	}
	db, err := Parse(b, "example.org")
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := db.Expand("team@example.org"); len(got) != 2 {
		t.Errorf("team: %q", got)
	}
}

func TestProblems(t *testing.T) {
	cases := []struct {
		name, js string
		want     []string // substrings of the problems, in order
	}{
		{"not an array", `{"name":"x"}`, []string{"not a JSON array"}},
		{"bad JSON", `[{"name":`, []string{"not a JSON array"}},
		{"unknown member", `[{"name":"a","password":"` + demoDigest + `","mailbox":["x@y.org"]}]`, []string{`entry 0: json: unknown field "mailbox"`}},
		{"missing members", `[{"password":"` + demoDigest + `"}]`, []string{`"name" is missing`, `"mailboxes" is missing`}},
		{"bad name", `[{"name":"a b","mailboxes":[]}]`, []string{`entry 0 ("a b"): name: bad local part`}},
		{"bad mailbox", `[{"name":"a","mailboxes":["x@y.org","not an address"]}]`, []string{"mailboxes[1]"}},
		{"bad hash", `[{"name":"a","password":"$md5$x","mailboxes":[]}]`, []string{"unsupported password hash"}},
		{"argon2 too costly", `[{"name":"a","password":"$argon2id$v=19$m=4194304,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA","mailboxes":[]}]`, []string{"out of range"}},
		{"bad scram", `[{"name":"a","scram-sha-256":"SCRAM-SHA-256$x","mailboxes":[]}]`, []string{"bad SCRAM-SHA-256 secret"}},
		{"loop", `[{"name":"a","mailboxes":["b@example.org"]},{"name":"b","mailboxes":["a@example.org"]}]`,
			[]string{"entry 0 (\"a\"): alias loop: a@example.org → b@example.org → a@example.org", "entry 1"}},
		{"self", `[{"name":"a","mailboxes":["A@Example.org"]}]`, []string{"alias loop"}},
		{"unknown local", `[{"name":"a","mailboxes":["ghost@example.org"]}]`, []string{"no such user: ghost@example.org (a mailbox of a@example.org)"}},
		{"second entry only", `[{"name":"ok","mailboxes":["x@y.org"]},{"name":"","mailboxes":[]}]`, []string{"entry 1"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse([]byte(c.js), "example.org")
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("Parse: %v, want an *Error", err)
			}
			var got []string
			for _, p := range e.Problems {
				if !p.Warning {
					got = append(got, p.String())
				}
			}
			if len(got) != len(c.want) {
				t.Fatalf("problems %q, want %d", got, len(c.want))
			}
			for i, w := range c.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("problem %d: %q, want it to contain %q", i, got[i], w)
				}
			}
		})
	}
}

func TestWarnings(t *testing.T) {
	db := mustParse(t, `[
		{"name":"a","password":"`+demoDigest+`","mailboxes":["x@y.org"]},
		{"name":"A","mailboxes":["z@y.org"]},
		{"name":"empty","password":"`+demoDigest+`","mailboxes":[]}]`)
	if len(db.Warnings) != 2 || db.Warnings[0].Entry != 1 || db.Warnings[1].Entry != 2 {
		t.Fatalf("warnings %v", db.Warnings)
	}
	// v1 semantics for a repeated name: mailboxes merged.
	if got, _ := db.Expand("a@example.org"); !slices.Equal(got, []string{"x@y.org", "z@y.org"}) {
		t.Errorf("merged: %q", got)
	}
	if _, ok := db.Authenticate("a", "demo"); !ok {
		t.Errorf("a list entry without a password must not remove the user's password")
	}
	if db.Len() != 2 {
		t.Errorf("Len %d", db.Len())
	}
}

// TestEmptyDatabase: a database without entries is refused like any
// invalid one; loaded, it would refuse every address and every login.
func TestEmptyDatabase(t *testing.T) {
	for _, js := range []string{"", " \n\t", "[]", " [ ]\n"} {
		db, err := Parse([]byte(js), "example.org")
		var e *Error
		if !errors.As(err, &e) || !strings.Contains(err.Error(), "the user database has no entries") {
			t.Errorf("Parse(%q) = %v, %v; want an *Error saying it has no entries", js, db, err)
		}
	}
}

func TestExpand(t *testing.T) {
	db := mustParse(t, `[
		{"name":"din","password":"`+demoDigest+`","mailboxes":["Romain <romain@example.com>"]},
		{"name":"list","mailboxes":["din@example.org","hannes@example.net","ROMAIN@example.com","sub@example.org"]},
		{"name":"sub","mailboxes":["din@example.org","x@example.net"]},
		{"name":"bob@other.org","password":"`+demoDigest+`","mailboxes":["bob@example.net"]},
		{"name":"\"john doe\"","mailboxes":["jd@example.net"]},
		{"name":"forward","mailboxes":["bob@other.org"]}]`)
	cases := []struct {
		addr string
		want []string
		err  error
	}{
		{"list@example.org", []string{"romain@example.com", "hannes@example.net", "x@example.net"}, nil},
		{"sub@example.org", []string{"romain@example.com", "x@example.net"}, nil},
		{"bob@other.org", []string{"bob@example.net"}, nil},
		{"forward@example.org", []string{"bob@example.net"}, nil},
		{`"john doe"@example.org`, []string{"jd@example.net"}, nil},
		{"nobody@example.org", nil, ErrUnknown},
		{"bob@example.org", nil, ErrUnknown},
		{"someone@elsewhere.net", []string{"someone@elsewhere.net"}, nil},
	}
	for _, c := range cases {
		got, err := db.Expand(c.addr)
		if !errors.Is(err, c.err) || !slices.Equal(got, c.want) {
			t.Errorf("Expand(%s) = %q, %v; want %q, %v", c.addr, got, err, c.want, c.err)
		}
	}
	if !db.IsLocalDomain("OTHER.org") || db.IsLocalDomain("example.com") {
		t.Errorf("domains %q", db.Domains())
	}
	if _, ok := db.Authenticate("bob@other.org", "demo"); !ok {
		t.Errorf("a domain-qualified login")
	}
	if _, ok := db.Authenticate("list", ""); ok {
		t.Errorf("a list without a password logged in")
	}
	if u := db.Login(`"John Doe"`); u == nil || u.Name != `"john doe"` {
		t.Errorf("quoted login: %v", u)
	}
}

func TestHashes(t *testing.T) {
	s, err := Hash("correct horse", true)
	if err != nil {
		t.Fatal(err)
	}
	bc, _ := bcrypt.GenerateFromPassword([]byte("battery staple"), bcrypt.MinCost)
	entries := []map[string]any{
		{"name": "argon", "password": s.Password, "scram-sha-256": s.ScramSHA256, "scram-sha-1": s.ScramSHA1, "cram-md5": s.CramMD5, "mailboxes": []string{}},
		{"name": "bcrypt", "password": string(bc), "mailboxes": []string{}},
	}
	js, _ := json.Marshal(entries)
	db := mustParse(t, string(js))
	for _, c := range []struct {
		login, pw string
		ok        bool
	}{{"argon", "correct horse", true}, {"argon", "correct horse ", false}, {"bcrypt", "battery staple", true}, {"bcrypt", "battery", false}} {
		if _, ok := db.Authenticate(c.login, c.pw); ok != c.ok {
			t.Errorf("%s/%q: %v", c.login, c.pw, ok)
		}
	}
	if !strings.HasPrefix(s.Password, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Errorf("argon2id parameters: %s", s.Password)
	}
	u := db.Login("argon")
	if !u.CheckCRAMMD5([]byte("<1.2@x>"), newCramSecret("correct horse").response([]byte("<1.2@x>"))) {
		t.Errorf("CRAM-MD5 from stored secret")
	}
	if m := db.Mechanisms(); !slices.Equal(m, []string{"SCRAM-SHA-256-PLUS", "SCRAM-SHA-256", "SCRAM-SHA-1", "CRAM-MD5", "PLAIN", "LOGIN"}) {
		t.Errorf("mechanisms %q", m)
	}
}

// scramExample is a complete exchange from an RFC.
type scramExample struct {
	mech, password, salt                string
	clientFirstBare, serverFirst, final string // final: client-final-message-without-proof
	proof, serverSignature              string
}

// TestScramRFCExamples derives the secrets from the RFCs' passwords and
// checks the RFCs' client proofs and server signatures against them.
func TestScramRFCExamples(t *testing.T) {
	for _, ex := range []scramExample{
		{ // RFC 5802 §5
			"SCRAM-SHA-1", "pencil", "QSXCR+Q6sek8bf92",
			"n=user,r=fyko+d2lbbFgONRv9qkxdawL",
			"r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096",
			"c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j",
			"v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=", "rmF9pqV8S7suAoZWja4dJRkFsKQ=",
		},
		{ // RFC 7677 §3
			"SCRAM-SHA-256", "pencil", "W22ZaJ0SNY7soEsUEjb6gQ==",
			"n=user,r=rOprNGfwEbeRWgbNEkqO",
			"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
			"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
			"dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=", "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
		},
	} {
		t.Run(ex.mech, func(t *testing.T) {
			salt, _ := base64.StdEncoding.DecodeString(ex.salt)
			sec, err := NewScramSecret(ex.mech, ex.password, salt, 4096)
			if err != nil {
				t.Fatal(err)
			}
			// Through the database format and back.
			js := fmt.Sprintf(`[{"name":"user","%s":%q,"mailboxes":[]}]`, strings.ToLower(ex.mech), sec.String())
			stored, ok := mustParse(t, js).Login("user").Scram(ex.mech + "-PLUS")
			if !ok {
				t.Fatal("no secret")
			}
			authMessage := ex.clientFirstBare + "," + ex.serverFirst + "," + ex.final
			h := stored.Hash()
			clientSig := hmacSum(h, stored.StoredKey, authMessage)
			proof, _ := base64.StdEncoding.DecodeString(ex.proof)
			clientKey := make([]byte, len(proof))
			for i := range proof {
				clientKey[i] = proof[i] ^ clientSig[i]
			}
			sum := h()
			sum.Write(clientKey)
			if !hmac.Equal(sum.Sum(nil), stored.StoredKey) {
				t.Errorf("the RFC's client proof does not verify")
			}
			if got := base64.StdEncoding.EncodeToString(hmacSum(h, stored.ServerKey, authMessage)); got != ex.serverSignature {
				t.Errorf("server signature %s, RFC %s", got, ex.serverSignature)
			}
		})
	}
}

// TestCramMD5RFC2195 is the example of RFC 2195 §2.
func TestCramMD5RFC2195(t *testing.T) {
	c := newCramSecret("tanstaaftanstaaf")
	back, err := parseCram(c.String())
	if err != nil {
		t.Fatal(err)
	}
	got := back.response([]byte("<1896.697170952@postoffice.reston.mci.net>"))
	if string(got) != "b913a602c7eda7a495b4e6e7334d3890" {
		t.Errorf("response %s", got)
	}
	long := newCramSecret(strings.Repeat("k", 100)) // keys over a block are hashed first
	if len(long.response([]byte("x"))) != 32 {
		t.Errorf("long key")
	}
}

// BenchmarkParse100k loads a 100 000-user database (argon2id hashes and
// SCRAM secrets, as `elit passwd` makes them).
func BenchmarkParse100k(b *testing.B) {
	s, err := Hash("pw", false)
	if err != nil {
		b.Fatal(err)
	}
	var sb strings.Builder
	sb.WriteString("[")
	for i := range 100_000 {
		if i > 0 {
			sb.WriteString(",\n")
		}
		fmt.Fprintf(&sb, `{"name":"user%d","password":%q,"scram-sha-256":%q,"mailboxes":["User %d <user%d@example.net>"]}`, i, s.Password, s.ScramSHA256, i, i)
	}
	sb.WriteString("]")
	data := []byte(sb.String())
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		db, err := Parse(data, "example.org")
		if err != nil || db.Len() != 100_000 {
			b.Fatal(err)
		}
	}
}
