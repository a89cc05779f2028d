package queue

import "sync"

// group shares syncs between concurrent callers (group commit, as a
// database's log writer does: one sync covers every commit that was ready
// when it started). Wait returns the result of a sync that started after
// Wait was called: while a sync runs, the callers that arrive wait for it
// to end and then for the next one, which the first of them starts for
// all. A caller gets the result of exactly that sync, since a later one
// may not report a write-back error an earlier one consumed.
type group struct {
	fn func() error // the sync

	mu      sync.Mutex
	cond    *sync.Cond
	started uint64 // syncs started
	done    uint64 // syncs ended (the one running, if any, is started)
	running bool
	results map[uint64]*groupResult
}

type groupResult struct {
	err     error
	waiters int
}

func newGroup(fn func() error) *group {
	g := &group{fn: fn, results: map[uint64]*groupResult{}}
	g.cond = sync.NewCond(&g.mu)
	return g
}

// Wait makes durable what the caller wrote before calling it.
func (g *group) Wait() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	need := g.started + 1 // the next sync to start covers us; a running one may not
	r := g.results[need]
	if r == nil {
		r = &groupResult{}
		g.results[need] = r
	}
	r.waiters++
	for g.done < need {
		if g.running {
			g.cond.Wait()
			continue
		}
		// Nobody runs the sync we need (started == need-1): run it for
		// everyone waiting for it.
		g.running = true
		g.started++
		gen := g.started
		g.mu.Unlock()
		err := g.fn()
		g.mu.Lock()
		g.results[gen].err = err
		g.done = gen
		g.running = false
		g.cond.Broadcast()
	}
	r.waiters--
	if r.waiters == 0 {
		delete(g.results, need)
	}
	return r.err
}

// Started returns how many syncs started.
func (g *group) Started() uint64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.started
}

// Done returns how many syncs ended.
func (g *group) Done() uint64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.done
}
