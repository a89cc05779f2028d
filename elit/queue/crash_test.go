package queue

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// A simulated disk for the queue (fileSystem), after OneFFS's power-cut
// tests (oneffs/device_test.go): every change (a write, a truncation, a
// creation, a rename, a removal) is seen at once by reads but becomes
// durable only at SyncFS. The power is cut at the cutAt-th change (a
// sync counts as one): that change and every later call fail. What survives is the durable state
// plus any of the changes made since the last sync, in any combination
// (a disk's write cache reorders), the cut one maybe half done.

var errPowerCut = errors.New("power cut")

type simState struct {
	names map[string]int // directory: name → inode
	data  map[int][]byte // inode → contents
}

func (st simState) clone() simState {
	c := simState{names: maps.Clone(st.names), data: map[int][]byte{}}
	for k, v := range st.data {
		c.data[k] = slices.Clone(v)
	}
	return c
}

// simOp is one change, applied to a state.
type simOp func(st *simState)

type simFS struct {
	mu       sync.Mutex
	view     simState // what reads see
	durable  simState
	pending  []simOp
	torn     simOp // the change the cut interrupted, half done
	changes  int
	cutAt    int // 0: never
	cut      bool
	nextIno  int
	syncs    int
	syncHook func() // called (unlocked) at each SyncFS, before it takes effect
}

func newSimFS(st simState) *simFS {
	ino := 0
	for k := range st.data {
		ino = max(ino, k)
	}
	return &simFS{view: st.clone(), durable: st.clone(), nextIno: ino + 1}
}

func emptyState() simState { return simState{names: map[string]int{}, data: map[int][]byte{}} }

// change applies op, or cuts the power instead when its turn has come
// (half of it landing when half is given).
func (s *simFS) change(op, half simOp) error {
	if s.cut {
		return errPowerCut
	}
	s.changes++
	if s.changes == s.cutAt {
		s.cut = true
		s.torn = half
		return errPowerCut
	}
	op(&s.view)
	s.pending = append(s.pending, op)
	return nil
}

func (s *simFS) OpenFile(name string, flag int, perm fs.FileMode) (file, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cut {
		return nil, errPowerCut
	}
	ino, ok := s.view.names[name]
	switch {
	case ok && flag&os.O_EXCL != 0:
		return nil, fs.ErrExist
	case !ok && flag&os.O_CREATE == 0:
		return nil, fs.ErrNotExist
	case !ok:
		ino = s.nextIno
		s.nextIno++
		op := func(st *simState) { st.names[name] = ino; st.data[ino] = nil }
		if err := s.change(op, nil); err != nil {
			return nil, err
		}
	case flag&os.O_TRUNC != 0:
		if err := s.change(func(st *simState) { st.data[ino] = nil }, nil); err != nil {
			return nil, err
		}
	}
	return &simFile{fs: s, ino: ino}, nil
}

func (s *simFS) Rename(oldname, newname string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cut {
		return errPowerCut
	}
	ino, ok := s.view.names[oldname]
	if !ok {
		return fs.ErrNotExist
	}
	return s.change(func(st *simState) {
		if st.names[oldname] == ino {
			delete(st.names, oldname)
		}
		st.names[newname] = ino
	}, nil)
}

func (s *simFS) Remove(name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cut {
		return errPowerCut
	}
	ino, ok := s.view.names[name]
	if !ok {
		return fs.ErrNotExist
	}
	return s.change(func(st *simState) {
		if st.names[name] == ino {
			delete(st.names, name)
		}
	}, nil)
}

func (s *simFS) ReadDir() ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cut {
		return nil, errPowerCut
	}
	return slices.Sorted(maps.Keys(s.view.names)), nil
}

func (s *simFS) SyncFS() error {
	if s.syncHook != nil {
		s.syncHook()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	// The power may go during the sync too: then none of it is sure.
	if err := s.change(func(*simState) {}, nil); err != nil {
		return err
	}
	s.syncs++
	s.durable = s.view.clone()
	s.pending = nil
	return nil
}

// outcomes lists states the cut may have left: the durable one, every
// change landed (the cut one half), and random combinations.
func (s *simFS) outcomes(rng *rand.Rand, n int) []simState {
	apply := func(keep func(i int) bool, torn bool) simState {
		st := s.durable.clone()
		for i, op := range s.pending {
			if keep(i) {
				op(&st)
			}
		}
		if torn && s.torn != nil {
			s.torn(&st)
		}
		return st
	}
	out := []simState{apply(func(int) bool { return false }, false), apply(func(int) bool { return true }, true)}
	for range n {
		out = append(out, apply(func(int) bool { return rng.IntN(2) == 0 }, rng.IntN(2) == 0))
	}
	return out
}

type simFile struct {
	fs  *simFS
	ino int
	pos int64
}

func (f *simFile) ReadAt(p []byte, off int64) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if f.fs.cut {
		return 0, errPowerCut
	}
	b := f.fs.view.data[f.ino]
	if off >= int64(len(b)) {
		return 0, io.EOF
	}
	n := copy(p, b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (f *simFile) Read(p []byte) (int, error) {
	n, err := f.ReadAt(p, f.pos)
	f.pos += int64(n)
	if n > 0 && errors.Is(err, io.EOF) {
		err = nil
	}
	return n, err
}

func writeAt(b, p []byte, off int64) []byte {
	if end := off + int64(len(p)); end > int64(len(b)) {
		b = append(b, make([]byte, end-int64(len(b)))...)
	}
	copy(b[off:], p)
	return b
}

func (f *simFile) WriteAt(p []byte, off int64) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	ino, p := f.ino, slices.Clone(p)
	half := p[:len(p)/2]
	err := f.fs.change(
		func(st *simState) { st.data[ino] = writeAt(st.data[ino], p, off) },
		func(st *simState) { st.data[ino] = writeAt(st.data[ino], half, off) })
	if err != nil {
		return 0, err
	}
	return len(p), nil
}

func (f *simFile) Write(p []byte) (int, error) {
	n, err := f.WriteAt(p, f.pos)
	f.pos += int64(n)
	return n, err
}

func (f *simFile) Truncate(size int64) error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	ino := f.ino
	return f.fs.change(func(st *simState) {
		b := st.data[ino]
		if int64(len(b)) > size {
			st.data[ino] = b[:size]
		} else {
			st.data[ino] = append(b, make([]byte, size-int64(len(b)))...)
		}
	}, nil)
}

func (f *simFile) Size() (int64, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if f.fs.cut {
		return 0, errPowerCut
	}
	return int64(len(f.fs.view.data[f.ino])), nil
}

func (f *simFile) Close() error { return nil }

// crashRun is what a workload was told before the cut.
type crashRun struct {
	content map[string]string // every message begun, by ID: its data
	acked   map[string]bool   // Commit returned nil
	removed map[string]bool   // Remove returned nil (durably gone)
	held    map[string]bool   // Update of a hold returned nil
	lazy    map[string]bool   // a removal was asked (maybe done, maybe not)
}

func newCrashRun() *crashRun {
	return &crashRun{content: map[string]string{}, acked: map[string]bool{}, removed: map[string]bool{}, held: map[string]bool{}, lazy: map[string]bool{}}
}

// crashWorkload queues, updates and removes messages on s until an
// error (the power cut), recording what it was told.
func crashWorkload(s *Store, r *crashRun) {
	put := func(i int) (*Message, error) {
		in, err := s.Begin()
		if err != nil {
			return nil, err
		}
		defer in.Abort()
		data := fmt.Sprintf("Subject: %d\r\n\r\n%s", i, strings.Repeat(fmt.Sprintf("line %d\r\n", i), 100*i+1))
		r.content[in.ID()] = data
		for rest := data; rest != ""; { // several writes, some of which a cut loses
			part := rest[:min(len(rest), len(data)/4+1)]
			rest = rest[len(part):]
			if _, err := io.WriteString(in, part); err != nil {
				return nil, err
			}
		}
		m := newMessage(fmt.Sprintf("r%d@example.net", i), "other@example.net")
		m.Header = fmt.Sprintf("Received: %d\r\n", i)
		if err := s.Commit(in, m); err != nil {
			return nil, err
		}
		r.acked[m.ID] = true
		return m, nil
	}
	var ms []*Message
	for i := range 3 {
		m, err := put(i)
		if err != nil {
			return
		}
		ms = append(ms, m)
	}
	// A delivery: lazily.
	ms[0].Recipients[0].Status = Delivered
	if s.UpdateLazily(ms[0]) != nil {
		return
	}
	// An operator's hold: durably.
	ms[1].Hold()
	if s.Update(ms[1]) != nil {
		return
	}
	r.held[ms[1].ID] = true
	r.lazy[ms[2].ID] = true
	if s.RemoveLazily(ms[2].ID) != nil {
		return
	}
	if _, err := put(3); err != nil {
		return
	}
	r.lazy[ms[0].ID] = true
	if s.Remove(ms[0].ID) != nil {
		return
	}
	r.removed[ms[0].ID] = true
	ms[1].Recipients[1].Status = Failed
	if s.UpdateLazily(ms[1]) != nil {
		return
	}
	put(4)
}

// TestPowerCut cuts the power at every change the queue makes to the
// disk, loses what was not synced in many combinations, and opens the
// queue again: every acknowledged message is there and intact (unless
// removed durably), every durable update holds, and no message is torn.
func TestPowerCut(t *testing.T) {
	// The number of changes of a run without a cut.
	full := newSimFS(emptyState())
	s, err := Open("sim", withFS(full))
	if err != nil {
		t.Fatal(err)
	}
	run := newCrashRun()
	crashWorkload(s, run)
	if len(run.acked) != 5 || len(run.removed) != 1 {
		t.Fatalf("without a cut: %d acknowledged, %d removed", len(run.acked), len(run.removed))
	}
	total := full.changes
	rng := rand.New(rand.NewPCG(1, 2))
	outcomes := 0
	for cut := 1; cut <= total+1; cut++ {
		sim := newSimFS(emptyState())
		sim.cutAt = cut
		s, err := Open("sim", withFS(sim))
		if err != nil {
			t.Fatal(err)
		}
		run := newCrashRun()
		crashWorkload(s, run)
		for k, st := range sim.outcomes(rng, 16) {
			outcomes++
			checkAfterCut(t, fmt.Sprintf("cut at change %d of %d, outcome %d", cut, total, k), st, run)
		}
	}
	t.Logf("%d cut points, %d outcomes checked", total+1, outcomes)
}

func checkAfterCut(t *testing.T, what string, st simState, run *crashRun) {
	t.Helper()
	sim := newSimFS(st)
	s, err := Open("sim", withFS(sim))
	if err != nil {
		t.Fatalf("%s: Open: %v", what, err)
	}
	msgs, err := s.List()
	if err != nil {
		t.Fatalf("%s: List: %v", what, err)
	}
	present := map[string]bool{}
	for _, m := range msgs {
		present[m.ID] = true
		want, ok := run.content[m.ID]
		if !ok {
			t.Fatalf("%s: unknown message %s", what, m.ID)
		}
		f, err := s.Data(m.ID)
		if err != nil {
			t.Fatalf("%s: %s: %v", what, m.ID, err)
		}
		got, err := io.ReadAll(f)
		f.Close()
		if err != nil || !strings.HasPrefix(string(got), "Received: ") || !strings.HasSuffix(string(got), want) || m.Size != int64(len(got)) {
			t.Fatalf("%s: %s is torn: %d bytes, %v", what, m.ID, len(got), err)
		}
		if run.held[m.ID] && m.Recipients[0].Status != Held {
			t.Errorf("%s: %s: the durable hold is lost: %+v", what, m.ID, m.Recipients[0])
		}
	}
	for id := range run.acked {
		if !present[id] && !run.removed[id] && !run.lazy[id] {
			t.Fatalf("%s: acknowledged message %s is lost", what, id)
		}
	}
	for id := range run.removed {
		if present[id] {
			t.Errorf("%s: %s removed durably is back", what, id)
		}
	}
	// Open left a clean queue: opening it again changes nothing.
	before := sim.changes
	if _, err := Open("sim", withFS(sim)); err != nil || sim.changes != before {
		t.Errorf("%s: a second Open: %v, %d changes", what, err, sim.changes-before)
	}
}

// TestGroupCommit: commits at once share syncs (fewer syncs than
// commits), and each returns only after a sync that started after its
// file was in place (its message is durable when Commit returns).
func TestGroupCommit(t *testing.T) {
	const n = 50
	sim := newSimFS(emptyState())
	sim.syncHook = func() { time.Sleep(2 * time.Millisecond) } // a sync takes time
	s, err := Open("sim", withFS(sim))
	if err != nil {
		t.Fatal(err)
	}
	start := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			m := newMessage(fmt.Sprintf("r%d@example.net", i))
			if err := s.Put(m, strings.NewReader("x\r\n")); err != nil {
				errs <- err
				return
			}
			sim.mu.Lock()
			_, durable := sim.durable.names[m.ID+fileSuffix]
			sim.mu.Unlock()
			if !durable {
				errs <- fmt.Errorf("%s: Commit returned before a sync covered it", m.ID)
			}
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := s.Syncs(); got >= n || got == 0 {
		t.Errorf("%d commits made %d syncs, want fewer", n, got)
	} else {
		t.Logf("%d commits, %d syncs", n, got)
	}
}

// TestGroupErrors: a sync's error goes to the commits it covered, not to
// later ones; the failed commit leaves nothing queued.
func TestGroupErrors(t *testing.T) {
	calls := 0
	g := newGroup(func() error {
		calls++
		if calls == 1 {
			return errors.New("input/output error")
		}
		return nil
	})
	if err := g.Wait(); err == nil {
		t.Error("the failed sync's error is lost")
	}
	if err := g.Wait(); err != nil {
		t.Errorf("a later sync: %v", err)
	}
}
