package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"elit.local/elit/queue"
)

// cmdQueue reads the queue: list (one line a message) or show ID (the
// envelope and delivery state as stored).
func cmdQueue(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("elit queue", flag.ContinueOnError)
	fs.SetOutput(stderr)
	state := fs.String("state", "/perm/elit", "the state directory (the queue is its queue/)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: elit queue [-state DIR] list | show ID")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	dir := filepath.Join(*state, "queue")
	if _, err := os.Stat(dir); err != nil {
		fmt.Fprintf(stderr, "elit queue: %v\n", err)
		return exitFailure
	}
	s, err := queue.Open(dir)
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
			fmt.Fprintf(stdout, "%s  %7d bytes  from %s  %d recipients, %d pending\n", m.ID, m.Size, from, len(m.Recipients), pending)
		}
		if err != nil {
			fmt.Fprintf(stderr, "elit queue: %v\n", err)
			return exitFailure
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
