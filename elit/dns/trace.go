package dns

import (
	"context"
	"sync"
)

// A Trace counts the answers a Client got for the lookups made with a
// context from WithTrace, and how many of them were secure (authenticated
// by DNSSEC, as a trusted resolver says; RFC 4035 §4.3): how a check
// tells whether its verdict rests on signed data alone, which our
// Authentication-Results field then says (issue 13). Resolvers other than
// Client (tests' Mem) record nothing.
type Trace struct {
	mu             sync.Mutex
	answers, valid int
}

type traceKey struct{}

// WithTrace returns a context whose lookups are counted in a new Trace.
func WithTrace(ctx context.Context) (context.Context, *Trace) {
	t := &Trace{}
	return context.WithValue(ctx, traceKey{}, t), t
}

func traceOf(ctx context.Context) *Trace {
	t, _ := ctx.Value(traceKey{}).(*Trace)
	return t
}

func (t *Trace) add(secure bool) {
	if t == nil {
		return
	}
	t.mu.Lock()
	t.answers++
	if secure {
		t.valid++
	}
	t.mu.Unlock()
}

// Secure says whether there was at least one answer and every answer was
// secure. A nil Trace is not secure.
func (t *Trace) Secure() bool {
	if t == nil {
		return false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.answers > 0 && t.valid == t.answers
}

// Counts returns the number of answers and of secure ones.
func (t *Trace) Counts() (answers, secure int) {
	if t == nil {
		return 0, 0
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.answers, t.valid
}
