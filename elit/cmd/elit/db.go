package main

import (
	"errors"
	"flag"
	"fmt"
	"io"

	"elit.local/elit/userdb"
	"elit.local/oneffs"
)

func cmdDBCheck(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("elit db check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	domain := fs.String("domain", "", "the mail domain that names without @domain are at (required)")
	sector := fs.Int("b", 0, "OneFFS sector size (default: the device's, or 512 for an image file)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: elit db check -domain DOMAIN [-b N] FILE|IMG")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if fs.NArg() != 1 || *domain == "" {
		fs.Usage()
		return exitUsage
	}
	path := fs.Arg(0)
	var opts []oneffs.Option
	if *sector != 0 {
		opts = append(opts, oneffs.WithSectorSize(*sector))
	}
	data, err := userdb.ReadSource(path, opts...)
	if err != nil {
		fmt.Fprintf(stderr, "elit db check: %v\n", err)
		return exitFailure
	}
	db, err := userdb.Parse(data, *domain)
	var e *userdb.Error
	switch {
	case errors.As(err, &e):
		for _, p := range e.Problems {
			fmt.Fprintf(stdout, "%s: %s\n", path, p)
		}
		fmt.Fprintf(stdout, "%s: invalid\n", path)
		return exitProblems
	case err != nil:
		fmt.Fprintf(stderr, "elit db check: %v\n", err)
		return exitUsage
	}
	for _, p := range db.Warnings {
		fmt.Fprintf(stdout, "%s: %s\n", path, p)
	}
	logins := 0
	for _, u := range db.Users() {
		if u.CanLogin() {
			logins++
		}
	}
	fmt.Fprintf(stdout, "%s: ok: %d addresses at %v, %d can log in, mechanisms %v\n", path, db.Len(), db.Domains(), logins, db.Mechanisms())
	return exitOK
}
