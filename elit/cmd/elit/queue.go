package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	"elit.local/elit/config"
	"elit.local/elit/control"
	"elit.local/elit/deliver"
	"elit.local/elit/lists"
	"elit.local/elit/queue"
)

// cmdQueue reads the queue: list (one line a message) or show ID (the
// envelope and delivery state as stored), and acts on it: hold, release,
// retry, drop, and a message's REQUIRETLS and TLS-Required settings (RFC
// 8689: requiretls ID on|off, tlsrequired ID no|yes) — through the
// running server's control socket, or on the files when no server runs
// (control.Command). destinations lists what each destination domain's
// servers offered (STARTTLS, REQUIRETLS) at the last sessions.
func cmdQueue(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("elit queue", flag.ContinueOnError)
	fs.SetOutput(stderr)
	state := fs.String("state", config.DefaultStateDir(), "the state `directory` of elit serve (the queue is its queue/)")
	noBounce := fs.Bool("no-bounce", false, "drop: do not tell the sender")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: elit queue [-state DIR] list | show ID | hold ID | release ID | retry ID | [-no-bounce] drop ID |\n"+
			"\trequiretls ID on|off | tlsrequired ID no|yes | destinations")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	st := config.State{Dir: *state}
	dir := st.Queue()
	if _, err := os.Stat(dir); err != nil {
		fmt.Fprintf(stderr, "elit queue: %v\n", err)
		return exitFailure
	}
	cmd := ""
	switch {
	case fs.NArg() == 2 && slices.Contains([]string{"hold", "release", "retry", "drop"}, fs.Arg(0)):
		cmd = fs.Arg(0)
		if cmd == "drop" && *noBounce {
			cmd = "drop-quietly"
		}
	case fs.NArg() == 3 && fs.Arg(0) == "requiretls" && (fs.Arg(2) == "on" || fs.Arg(2) == "off"),
		fs.NArg() == 3 && fs.Arg(0) == "tlsrequired" && (fs.Arg(2) == "no" || fs.Arg(2) == "yes"):
		cmd = fs.Arg(0) + "-" + fs.Arg(2)
	}
	if cmd != "" {
		out, err := control.Command(st, cmd, fs.Arg(1))
		if err != nil {
			fmt.Fprintf(stderr, "elit queue: %v\n", err)
			return exitFailure
		}
		fmt.Fprintln(stdout, out)
		return exitOK
	}
	s, err := queue.Attach(dir)
	if err != nil {
		fmt.Fprintf(stderr, "elit queue: %v\n", err)
		return exitFailure
	}
	switch {
	case fs.NArg() == 1 && fs.Arg(0) == "list":
		msgs, err := s.List()
		for _, m := range msgs {
			pending := 0
			for _, r := range m.Recipients {
				if r.Status == queue.Pending {
					pending++
				}
			}
			from := m.From
			if from == "" {
				from = "<>"
			}
			tls := ""
			if m.RequireTLS {
				tls = "  REQUIRETLS"
			} else if m.TLSRequiredNo {
				tls = "  TLS-Required: No"
			}
			fmt.Fprintf(stdout, "%s  %7d bytes  from %s  %d recipients, %d pending%s\n", m.ID, m.Size, from, len(m.Recipients), pending, tls)
		}
		if err != nil {
			fmt.Fprintf(stderr, "elit queue: %v\n", err)
			return exitFailure
		}
		return exitOK
	case fs.NArg() == 1 && fs.Arg(0) == "destinations":
		d, err := deliver.OpenDestinations(st.Destinations(), 0)
		if err != nil {
			fmt.Fprintf(stderr, "elit queue: %v\n", err)
			return exitFailure
		}
		for _, x := range d.List() {
			fmt.Fprintf(stdout, "%s  host %s  starttls %s  requiretls %s  seen %s", x.Domain, x.Host, yesNo(x.STARTTLS), yesNo(x.REQUIRETLS), x.Updated.UTC().Format(time.RFC3339))
			if x.Downgrades > 0 {
				fmt.Fprintf(stdout, "  STARTTLS missing %d times, last %s", x.Downgrades, x.LastDowngrade.UTC().Format(time.RFC3339))
			}
			fmt.Fprintln(stdout)
		}
		return exitOK
	case fs.NArg() == 2 && fs.Arg(0) == "show":
		m, err := s.Get(fs.Arg(1))
		if err != nil {
			fmt.Fprintf(stderr, "elit queue: %v\n", err)
			return exitFailure
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(m)
		return exitOK
	}
	fs.Usage()
	return exitUsage
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// cmdLists prints the bounces counted for each list member.
func cmdLists(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("elit lists", flag.ContinueOnError)
	fs.SetOutput(stderr)
	state := fs.String("state", config.DefaultStateDir(), "the state `directory` of elit serve")
	if err := fs.Parse(args); err != nil || fs.NArg() != 0 {
		return exitUsage
	}
	b, err := lists.Open(config.State{Dir: *state}.ListBounces())
	if err != nil {
		fmt.Fprintf(stderr, "elit lists: %v\n", err)
		return exitFailure
	}
	for _, l := range lists.Format(b.Read()) {
		fmt.Fprintln(stdout, l)
	}
	return exitOK
}
