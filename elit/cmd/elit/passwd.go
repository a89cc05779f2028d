package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/term"

	"elit.local/elit/userdb"
)

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error { *l = append(*l, s); return nil }

func cmdPasswd(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("elit passwd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cram := fs.Bool("cram-md5", false, "also make a CRAM-MD5 secret (it lets whoever reads the database log in with CRAM-MD5)")
	name := fs.String("name", "", "print a whole entry for this user (login and local part, or name@domain)")
	var mailboxes listFlag
	fs.Var(&mailboxes, "mailbox", "with -name: an address the user's mail goes to (repeat for a list)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: elit passwd [-cram-md5] [-name NAME -mailbox ADDR...]\n\nReads the password from standard input (asking twice on a terminal) and\nprints the fields to put in the user's database entry.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if fs.NArg() > 0 || (*name == "" && len(mailboxes) > 0) {
		fs.Usage()
		return exitUsage
	}
	type entry struct {
		Name string `json:"name"`
		userdb.Secrets
		Mailboxes []string `json:"mailboxes"`
	}
	if *name != "" {
		if mailboxes == nil {
			mailboxes = listFlag{}
		}
		// Check the name and mailboxes as the server will, before asking
		// for the password (an entry without one is a valid list).
		js, _ := json.Marshal([]map[string]any{{"name": *name, "mailboxes": mailboxes}})
		domain := "localhost"
		if i := strings.LastIndexByte(*name, '@'); i >= 0 {
			domain = (*name)[i+1:]
		}
		if _, err := userdb.Parse(js, domain); err != nil {
			fmt.Fprintf(stderr, "elit passwd: %v\n", err)
			return exitUsage
		}
	}
	pw, err := readPassword(stdin, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "elit passwd: %v\n", err)
		return exitFailure
	}
	s, err := userdb.Hash(pw, *cram)
	if err != nil {
		fmt.Fprintf(stderr, "elit passwd: %v\n", err)
		return exitFailure
	}
	var out any = s
	if *name != "" {
		out = entry{*name, s, mailboxes}
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	enc.Encode(out)
	return exitOK
}

// readPassword reads a password: asked twice without echo on a terminal,
// otherwise the first line of standard input.
func readPassword(stdin io.Reader, stderr io.Writer) (string, error) {
	if f, ok := stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprint(stderr, "Password: ")
		a, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(stderr)
		if err != nil {
			return "", err
		}
		fmt.Fprint(stderr, "Again: ")
		b, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(stderr)
		if err != nil {
			return "", err
		}
		if string(a) != string(b) {
			return "", errors.New("the passwords differ")
		}
		return checkPassword(string(a))
	}
	line, err := bufio.NewReader(stdin).ReadString('\n')
	if err != nil && (err != io.EOF || line == "") {
		return "", errors.New("no password on standard input")
	}
	return checkPassword(strings.TrimRight(line, "\r\n"))
}

func checkPassword(pw string) (string, error) {
	if pw == "" {
		return "", errors.New("empty password")
	}
	return pw, nil
}
