package userdb

import (
	"testing"
)

// FuzzParse: any input gives a database or an *Error, never a panic; a
// database that parses can expand every address and answer logins.
func FuzzParse(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		db, err := Parse(data, "example.org")
		if err != nil {
			if _, ok := err.(*Error); !ok {
				t.Fatalf("error of type %T: %v", err, err)
			}
			return
		}
		for _, u := range db.Users() {
			if _, err := db.Expand(u.Address); err != nil {
				t.Fatalf("a valid database cannot expand %s: %v", u.Address, err)
			}
			db.Login(u.Name)
		}
		db.Mechanisms()
	})
}
