// Command elit is the Elit mail server and its tools.
//
//	elit serve -domain DOMAIN (-db IMG | -db-json FILE) [flags]  run the server
//	elit passwd [-cram-md5] [-name NAME -mailbox ADDR...]   make the password fields of a user
//	elit db check -domain DOMAIN FILE|IMG                    check a user database
//	elit queue [-state DIR] list|show|hold|release|retry|drop ID  the queue
//	elit lists [-state DIR]                                  list member bounces
//	elit dkim genkey|sign|verify, spf check, dmarc lookup, arc verify, dns-records
package main

import (
	"fmt"
	"io"
	"os"
)

// version is set at build time (-ldflags=-X main.version=...).
var version = "dev"

// Exit codes: 0 ok; 1 the check found problems; 2 a command-line error;
// 125 a failure (gokrazy's "do not restart me" code).
const (
	exitOK       = 0
	exitProblems = 1
	exitUsage    = 2
	exitFailure  = 125
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	switch {
	case len(args) >= 1 && args[0] == "serve":
		return cmdServe(args[1:], stderr)
	case len(args) >= 1 && args[0] == "passwd":
		return cmdPasswd(args[1:], stdin, stdout, stderr)
	case len(args) >= 2 && args[0] == "db" && args[1] == "check":
		return cmdDBCheck(args[2:], stdout, stderr)
	case len(args) >= 1 && args[0] == "queue":
		return cmdQueue(args[1:], stdout, stderr)
	case len(args) >= 1 && args[0] == "lists":
		return cmdLists(args[1:], stdout, stderr)
	case len(args) >= 1 && args[0] == "dkim":
		return cmdDKIM(args[1:], stdin, stdout, stderr)
	case len(args) >= 1 && args[0] == "spf":
		return cmdSPF(args[1:], stdout, stderr)
	case len(args) >= 1 && args[0] == "dmarc":
		return cmdDMARC(args[1:], stdout, stderr)
	case len(args) >= 1 && args[0] == "arc":
		return cmdARC(args[1:], stdin, stdout, stderr)
	case len(args) >= 1 && args[0] == "dns-records":
		return cmdDNSRecords(args[1:], stdout, stderr)
	case len(args) >= 1 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help"):
		usage(stdout)
		return exitOK
	}
	usage(stderr)
	return exitUsage
}

func usage(w io.Writer) {
	fmt.Fprint(w, `usage:
  elit serve -domain DOMAIN (-db IMG | -db-json FILE) [flags]
        run the mail server: MX on :25, submission on :587 and :465
        (elit serve -h lists the flags)
  elit passwd [-cram-md5] [-name NAME -mailbox ADDR...]
        read a password on standard input and print the password fields of a
        user database entry (argon2id, SCRAM-SHA-256, SCRAM-SHA-1)
  elit db check -domain DOMAIN [-b N] FILE|IMG
        check a user database (a JSON file, or a OneFFS image or partition)
        and print each problem with its entry index
  elit queue [-state DIR] list | show ID | hold ID | release ID | retry ID | [-no-bounce] drop ID
  elit queue [-state DIR] requiretls ID on|off | tlsrequired ID no|yes | destinations
        list the queued messages, show one's envelope and delivery state, or
        act on one (through the running server, or on the files)
  elit lists [-state DIR]
        the bounces counted for each mailing list member
  elit dkim genkey -domain D [-selector S] [-algo rsa|ed25519] [-state DIR]
        make a DKIM key and print its TXT record
  elit dkim sign -domain D [-selector S] [-state DIR] < message
  elit dkim verify [-resolver HOST:PORT] < message
        sign a message, or check each of its signatures (exit 0: one passes)
  elit spf check -ip IP -helo NAME -from ADDR [-resolver HOST:PORT]
  elit dmarc lookup [-resolver HOST:PORT] DOMAIN
  elit arc verify [-resolver HOST:PORT] < message
        what a receiving server finds: why a destination refused our mail
  elit dns-records -domain D [-hostname HOST] [-state DIR] [-tls-cert FILE]
        every record the domain needs, as the status page lists them
`)
}
