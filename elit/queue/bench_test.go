package queue

import (
	"fmt"
	"strings"
	"sync"
	"testing"
)

// BenchmarkCommit queues 1 KiB messages (Begin, Write, Commit) from 1
// and from 50 goroutines at once, on the disk of t.TempDir (docs/benchmarks.md,
// "Queue: syncs per message"), and reports the syncs per message.
func BenchmarkCommit(b *testing.B) {
	data := []byte(strings.Repeat("x", 1022) + "\r\n")
	for _, par := range []int{1, 50} {
		b.Run(fmt.Sprintf("goroutines=%d", par), func(b *testing.B) {
			s, err := Open(b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			work := make(chan struct{})
			var wg sync.WaitGroup
			for range par {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range work {
						in, err := s.Begin()
						if err != nil {
							b.Error(err)
							return
						}
						in.Write(data)
						if err := s.Commit(in, newMessage("a@example.net")); err != nil {
							b.Error(err)
						}
					}
				}()
			}
			b.ResetTimer()
			syncs := s.Syncs()
			defer func() { b.ReportMetric(float64(s.Syncs()-syncs)/float64(b.N), "syncs/op") }()
			for range b.N {
				work <- struct{}{}
			}
			close(work)
			wg.Wait()
		})
	}
}
