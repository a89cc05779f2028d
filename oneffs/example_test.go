package oneffs_test

import (
	"fmt"
	"log"
	"os"
	"path/filepath"

	"elit.local/oneffs"
)

func Example() {
	dir, err := os.MkdirTemp("", "oneffs-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "db.img")

	// Make an image with room to grow, in the fail-safe format.
	users := []byte(`[{"name":"din","password":"...","mailboxes":["romain@example.org"]}]`)
	if err := oneffs.Create(path, users, oneffs.WithSize(64<<10), oneffs.WithFormat(oneffs.FailSafe)); err != nil {
		log.Fatal(err)
	}

	// Open detects the format; Write keeps it.
	im, err := oneffs.Open(path)
	if err != nil {
		log.Fatal(err)
	}
	defer im.Close()
	if err := im.Write([]byte(`[]`)); err != nil {
		log.Fatal(err)
	}
	data, err := im.Read()
	if err != nil {
		log.Fatal(err)
	}
	info, _ := im.Stat()
	fmt.Printf("%s: %s (%s, write %d)\n", path[len(dir)+1:], data, info.Format, info.Counter)
	// Output: db.img: [] (fail-safe, write 2)
}
