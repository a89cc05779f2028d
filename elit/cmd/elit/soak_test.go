package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"elit.local/internal/freeport"
	"elit.local/oneffs"
)

// The soak test (issue 14): elit serve under load for a while, then
// faults under load — SIGKILLs, the destination down, the disk full, the
// user database corrupted and emptied — with the abuse table run against
// it during the load. Every message carries its own Message-ID: those
// acknowledged with 250 must all reach the destination (smtp-sink); the
// ones delivered twice are counted and bounded. After the load the queue
// drains, and the server's goroutines, open files and live heap are back
// where they were.
//
// By default it is short (make test); ELIT_SOAK=long is make soak: 10
// minutes at 50 sessions, 50 SIGKILLs, 10 000 connections dropped.
// Speeds are printed, never checked.

// soakPlan is how long and how hard.
type soakPlan struct {
	load     time.Duration // the load phase
	sessions int           // concurrent client sessions
	kills    int           // SIGKILLs under load
	fault    time.Duration // how long the destination is down, the disk full
	flood    int           // connections opened and dropped
	samples  int           // resource samples during the load phase
	// fsSize is the size of the state's file system: the queue grows
	// under the long load, delivery being slower than reception here.
	fsSize string
}

func soakSettings() soakPlan {
	if os.Getenv("ELIT_SOAK") == "long" {
		return soakPlan{load: 10 * time.Minute, sessions: 50, kills: 50, fault: 30 * time.Second, flood: 10000, samples: 20, fsSize: "1g"}
	}
	return soakPlan{load: 20 * time.Second, sessions: 10, kills: 5, fault: 3 * time.Second, flood: 1000, samples: 5, fsSize: "64m"}
}

func TestSoak(t *testing.T) {
	plan := soakSettings()
	needTools(t, "smtp-sink")
	dir := t.TempDir()
	// The state (and so the queue) on a small file system of its own, to
	// fill it; without root the disk-full phase is skipped.
	state := filepath.Join(dir, "state")
	fsDir := ""
	if os.Geteuid() == 0 {
		fsDir = filepath.Join(dir, "fs")
		os.Mkdir(fsDir, 0o700)
		if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+plan.fsSize+",mode=0700", "tmpfs", fsDir).CombinedOutput(); err != nil {
			t.Logf("no small file system (mount tmpfs: %v: %s): the disk-full phase is skipped", err, out)
			fsDir = ""
		} else {
			t.Cleanup(func() { exec.Command("umount", "-l", fsDir).Run() })
			state = filepath.Join(fsDir, "state")
		}
	} else {
		t.Log("not root: no small file system, the disk-full phase is skipped")
	}
	img := filepath.Join(dir, "db.img")
	writeDBImage(t, img, testDB(t))

	sk := startSink(t, "")
	_, sinkPort, _ := net.SplitHostPort(sk.Addr)
	resolver := dnsServer(t, map[string]string{"example.com": "127.0.0.1", "example.net": "127.0.0.1",
		"victim.test": "127.0.0.1", "attacker.example": "127.0.0.1"})
	port := func() string { return "127.0.0.1:" + strconv.Itoa(freeport.Get(t)) }
	mx, sub, subs, metricsAddr := port(), port(), port(), port()
	s := deliveryServer(t, resolver, sinkPort, "-state", state, "-db", img, "-db-json", "", "-db-check-interval", "200ms",
		"-mx-addr", mx, "-submission-addr", sub, "-submissions-addr", subs, "-metrics-addr", metricsAddr,
		"-max-deliveries", "10", "-read-timeout", "10s")
	s.state = state
	key, err := os.ReadFile(filepath.Join(state, "srs.key"))
	if err != nil {
		t.Fatal(err)
	}
	sinks := []*sink{sk}
	ld := &soakLoad{addr: mx}
	report := &soakReport{t: t, start: time.Now()}
	defer func() { t.Log("\n" + report.String()) }()

	// Warm up, then the resources at rest.
	ld.start(plan.sessions, "warmup")
	time.Sleep(2 * time.Second)
	ld.stop()
	waitDrained(t, s, sinks, ld)
	base := settle(t, s, metricsAddr, nil)
	report.add("at rest before the load: %s", base)

	// The load, with the abuse table run against the server meanwhile.
	start := time.Now()
	ld.start(plan.sessions, "load")
	abuseDone := make(chan []abuseResult, 1)
	go func() {
		abuseDone <- runAbuse(abuseTarget{mx: mx, sub: sub, subs: subs, cert: s.cert, key: key}, plan.flood)
	}()
	var during []resources
	for i := range plan.samples {
		time.Sleep(plan.load / time.Duration(plan.samples))
		r := sample(t, s, metricsAddr)
		during = append(during, r)
		report.add("load %3.0f%%: %s", 100*float64(i+1)/float64(plan.samples), r)
	}
	results := <-abuseDone
	ld.stop()
	loadTime := time.Since(start)
	sent := ld.count("load")
	report.add("load: %d sessions for %s: %d messages acknowledged (%.0f/s)", plan.sessions, loadTime.Round(time.Second), sent,
		float64(sent)/loadTime.Seconds())
	failed := 0
	for _, r := range results {
		if !r.ok {
			failed++
			t.Errorf("abuse case %q: %s", r.name, r.detail)
		}
	}
	report.add("abuse: %d passed, %d failed", len(results)-failed, failed)
	drainStart := time.Now()
	waitDrained(t, s, sinks, ld)
	report.add("queue drained %s after the load", time.Since(drainStart).Round(100*time.Millisecond))
	after := settle(t, s, metricsAddr, &base)
	report.add("at rest after the load: %s", after)
	checkResources(t, base, during, after)
	if e := ld.errors("load"); len(e) > 0 {
		t.Errorf("error replies under load: %v", e)
	}

	// SIGKILLs at random moments under load.
	s.resetLog()
	ld.start(plan.sessions, "kill")
	for range plan.kills {
		time.Sleep(time.Duration(300+rand.IntN(1200)) * time.Millisecond)
		s.kill()
		s.resetLog()
		s.start()
	}
	time.Sleep(time.Second)
	report.add("SIGKILL: %d kills under load, %d messages acknowledged meanwhile", plan.kills, ld.count("kill"))

	// The destination down, then back.
	ld.setPhase("destination down")
	sk.Stop()
	time.Sleep(plan.fault)
	ld.setPhase("destination back")
	sk = startSink(t, sk.Addr)
	sinks = append(sinks, sk)
	time.Sleep(plan.fault)
	report.add("destination down for %s under load: %d messages acknowledged meanwhile", plan.fault, ld.count("destination down"))

	// The disk full.
	if fsDir != "" {
		ld.setPhase("disk full")
		filler := filepath.Join(fsDir, "filler")
		fillDisk(t, filler)
		time.Sleep(plan.fault)
		for i := 0; i < 300 && ld.errors("disk full")["452 4.3.1"] == 0; i++ {
			time.Sleep(100 * time.Millisecond) // until a client meets it
		}
		full := ld.count("disk full")
		// Replies to data written while the disk was full may come
		// after the space is freed: 452 4.3.1 is allowed until a
		// message is accepted, none after.
		os.Remove(filler)
		ld.setPhase("disk freeing")
		waitFor(t, "a message accepted once the disk has room", func() bool { return ld.count("disk freeing") > 0 })
		ld.setPhase("disk freed")
		if e := ld.errors("disk freeing"); len(e) > 0 && (len(e) > 1 || e["452 4.3.1"] == 0) {
			t.Errorf("error replies other than 452 4.3.1 while the disk was freed: %v", e)
		}
		e := ld.errors("disk full")
		report.add("disk full for %s under load: %d refused with 452 4.3.1, %d acknowledged (space freed by deliveries)", plan.fault, e["452 4.3.1"], full)
		if e["452 4.3.1"] == 0 {
			t.Errorf("the disk was full and no message was refused with 452 4.3.1")
		}
		delete(e, "452 4.3.1")
		if len(e) > 0 {
			t.Errorf("error replies other than 452 4.3.1 with the disk full: %v", e)
		}
	}

	// The user database corrupted, emptied, then good again, while the
	// load goes on: its users stay.
	ld.setPhase("database")
	s.resetLog()
	good, _ := os.ReadFile(img)
	loads := func() int {
		l := s.logText()
		return strings.Count(l, "cannot load the user database") + strings.Count(l, "user database loaded")
	}
	for _, bad := range []struct {
		what  string
		write func()
	}{
		{"corrupted", func() { corruptImage(t, img) }},
		{"emptied", func() { writeDBImage(t, img, nil) }},
		{"good again", func() { os.WriteFile(img, good, 0o600) }},
	} {
		before := loads()
		bad.write()
		waitFor(t, "the database "+bad.what+" seen", func() bool { return loads() > before })
		time.Sleep(time.Second)
	}
	if !strings.Contains(s.logText(), "cannot load the user database; the one in use stays") {
		t.Errorf("the server never refused the broken database:\n%s", tail(s.logText(), 20))
	}
	report.add("database corrupted, emptied and restored under load: %d messages acknowledged meanwhile", ld.count("database"))
	ld.stop()

	// Every acknowledged message delivered; duplicates bounded.
	waitDrained(t, s, sinks, ld)
	for _, phase := range []string{"kill", "destination down", "destination back", "disk freed", "database"} {
		if e := ld.errors(phase); len(e) > 0 {
			t.Errorf("error replies in phase %q: %v", phase, e)
		}
	}
	acct := ld.account(sinks)
	report.add("messages: %d acknowledged, %d deliveries due, %d delivered, %d lost, %d duplicates, %d in doubt delivered",
		acct.acked, acct.due, acct.delivered, acct.lost, acct.dups, acct.doubtDelivered)
	if acct.lost > 0 {
		t.Errorf("%d acknowledged deliveries lost, e.g. %v", acct.lost, acct.lostIDs)
	}
	// A kill may repeat the transactions in flight (-max-deliveries),
	// and the destination's fall may repeat those it had accepted.
	if bound := (plan.kills + 1) * 10 * 2; acct.dups > bound {
		t.Errorf("%d duplicates, more than %d", acct.dups, bound)
	}
}

// writeDBImage writes the database data (nil: empty) to a OneFFS image.
func writeDBImage(t *testing.T, img string, data []byte) {
	t.Helper()
	if err := os.WriteFile(img+".new", make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	im, err := oneffs.Open(img + ".new")
	if err != nil {
		t.Fatal(err)
	}
	if err := im.Write(data); err != nil {
		t.Fatal(err)
	}
	im.Close()
	if err := os.Rename(img+".new", img); err != nil {
		t.Fatal(err)
	}
}

// corruptImage flips bytes in the data of a OneFFS image: its checksum
// fails.
func corruptImage(t *testing.T, img string) {
	t.Helper()
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt([]byte("}}garbage{{"), 512+10); err != nil {
		t.Fatal(err)
	}
}

// fillDisk writes the file until the file system is full.
func fillDisk(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for range 1 << 16 {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			return
		}
	}
	t.Fatal("the file system never filled")
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// resetLog forgets the log so far (a long run would keep it all).
func (s *proc) resetLog() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.log.Reset()
}

// soakReport is the figures, printed at the end, each line with the
// time since the start.
type soakReport struct {
	t     *testing.T
	start time.Time
	lines []string
}

func (r *soakReport) add(format string, args ...any) {
	line := fmt.Sprintf("%6.1fs  ", time.Since(r.start).Seconds()) + fmt.Sprintf(format, args...)
	r.t.Log(line) // as it goes, for a long run
	r.lines = append(r.lines, line)
}

func (r *soakReport) String() string { return strings.Join(r.lines, "\n") }

// resources are the server's, seen from outside.
type resources struct {
	rss, heap  int64 // bytes: resident, live heap
	fds, gorou int
}

func (r resources) String() string {
	return fmt.Sprintf("RSS %.1f MiB, live heap %.1f MiB, %d open files, %d goroutines",
		float64(r.rss)/(1<<20), float64(r.heap)/(1<<20), r.fds, r.gorou)
}

var metricRe = regexp.MustCompile(`(?m)^(go_goroutines|go_gc_heap_live_bytes|elit_queue_messages) (\S+)$`)

func sample(t *testing.T, s *proc, metricsAddr string) resources {
	t.Helper()
	var r resources
	pid := s.cmd.Process.Pid
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	if m := regexp.MustCompile(`VmRSS:\s+(\d+) kB`).FindSubmatch(status); m != nil {
		kb, _ := strconv.ParseInt(string(m[1]), 10, 64)
		r.rss = kb << 10
	}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	r.fds = len(fds)
	m := metrics(t, metricsAddr)
	r.gorou = int(m["go_goroutines"])
	r.heap = int64(m["go_gc_heap_live_bytes"])
	return r
}

func metrics(t *testing.T, addr string) map[string]float64 {
	t.Helper()
	// A connection each time: one kept open would count as the server's.
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("metrics: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	out := map[string]float64{}
	for _, m := range metricRe.FindAllStringSubmatch(string(b), -1) {
		out[m[1]], _ = strconv.ParseFloat(m[2], 64)
	}
	return out
}

// fdSlack is the files the server may keep open once it has served: the
// list bounces file, opened at the first bounce and kept for appends.
const fdSlack = 3

// settle waits until the server is at rest (idle delivery sessions closed
// after 5 s; goroutines and open files back to base, when given) and
// samples it.
func settle(t *testing.T, s *proc, metricsAddr string, base *resources) resources {
	t.Helper()
	var r resources
	for i := range 60 {
		time.Sleep(time.Second)
		r = sample(t, s, metricsAddr)
		if i >= 6 && (base == nil || r.gorou <= base.gorou && r.fds <= base.fds+fdSlack) {
			break
		}
	}
	return r
}

// checkResources: at rest after the load, no more goroutines or open
// files than before it, and a live heap no larger than early in the load
// (with room for a collection that had not run yet).
func checkResources(t *testing.T, base resources, during []resources, after resources) {
	t.Helper()
	if after.gorou > base.gorou+5 {
		t.Errorf("goroutines: %d at rest after the load, %d before", after.gorou, base.gorou)
	}
	if after.fds > base.fds+fdSlack {
		t.Errorf("open files: %d at rest after the load, %d before", after.fds, base.fds)
	}
	if len(during) > 0 {
		early := max(during[0].heap, base.heap)
		if after.heap > early*3/2+16<<20 {
			t.Errorf("live heap: %d bytes at rest after the load, %d early in it", after.heap, early)
		}
	}
}

// waitDrained waits until the queue is empty and the sinks have stopped
// receiving.
func waitDrained(t *testing.T, s *proc, sinks []*sink, ld *soakLoad) {
	t.Helper()
	qdir := filepath.Join(s.state, "queue")
	deadline := time.Now().Add(5 * time.Minute)
	for {
		names, err := os.ReadDir(qdir)
		if err != nil {
			t.Fatal(err)
		}
		left := 0
		for _, n := range names {
			if strings.HasSuffix(n.Name(), ".q") {
				left++
			}
		}
		if left == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d messages still queued after 5 minutes:\n%s", left, tail(s.logText(), 30))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// soakLoad is client sessions sending messages with unique Message-IDs,
// each from its own loopback address (127.0.1.x), recording what each
// phase got.
type soakLoad struct {
	addr string

	mu     sync.Mutex
	phase  string
	acked  map[string]int // Message-ID → deliveries due
	doubt  map[string]bool
	counts map[string]int            // phase → messages acknowledged
	errs   map[string]map[string]int // phase → error reply → count
	next   int
	stopc  chan struct{}
	wg     sync.WaitGroup
}

func (l *soakLoad) start(sessions int, phase string) {
	l.mu.Lock()
	if l.acked == nil {
		l.acked, l.doubt, l.counts, l.errs = map[string]int{}, map[string]bool{}, map[string]int{}, map[string]map[string]int{}
	}
	l.phase = phase
	l.stopc = make(chan struct{})
	l.mu.Unlock()
	for i := range sessions {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			l.session(net.IPv4(127, 0, 1, byte(1+i)))
		}()
	}
}

func (l *soakLoad) stop() {
	close(l.stopc)
	l.wg.Wait()
}

func (l *soakLoad) setPhase(p string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.phase = p
}

func (l *soakLoad) count(phase string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.counts[phase]
}

func (l *soakLoad) errors(phase string) map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string]int{}
	for k, v := range l.errs[phase] {
		out[k] = v
	}
	return out
}

// newID returns a new Message-ID and the current phase.
func (l *soakLoad) newID() (string, string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.next++
	return fmt.Sprintf("soak.%d@example.net", l.next), l.phase
}

func (l *soakLoad) record(phase, id string, due int, reply string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case strings.HasPrefix(reply, "250"):
		l.acked[id] = due
		l.counts[phase]++
	case reply == "":
		l.doubt[id] = true // no reply: queued or not
	default:
		l.errorReply(phase, reply)
	}
}

func (l *soakLoad) errorReply(phase, reply string) {
	if l.errs[phase] == nil {
		l.errs[phase] = map[string]int{}
	}
	code := reply
	if len(code) > 9 {
		code = code[:9]
	}
	l.errs[phase][code]++
}

// session sends messages, a few a connection, until stopped; a refused or
// broken connection (the server killed) is tried again.
func (l *soakLoad) session(local net.IP) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: local}, Timeout: 5 * time.Second}
	stopped := func() bool {
		select {
		case <-l.stopc:
			return true
		default:
			return false
		}
	}
	for n := 0; !stopped(); n++ {
		c, err := d.Dial("tcp", l.addr)
		if err != nil {
			time.Sleep(50 * time.Millisecond)
			continue
		}
		l.connection(c, stopped)
		c.Close()
	}
}

// connection runs one connection: up to 5 messages, to din (one delivery)
// or, one in four, to the list team (two).
func (l *soakLoad) connection(c net.Conn, stopped func() bool) {
	c.SetDeadline(time.Now().Add(60 * time.Second))
	r := bufio.NewReader(c)
	reply := func() string {
		var b strings.Builder
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return ""
			}
			b.WriteString(line)
			if len(line) < 4 || line[3] != '-' {
				return strings.TrimRight(b.String(), "\r\n")
			}
		}
	}
	_, phase := l.newID()
	step := func(cmd, want string) bool {
		if cmd != "" {
			if _, err := io.WriteString(c, cmd+"\r\n"); err != nil {
				return false
			}
		}
		got := reply()
		if got == "" {
			return false
		}
		if !strings.HasPrefix(got, want) {
			l.mu.Lock()
			l.errorReply(phase, got)
			l.mu.Unlock()
			if strings.HasPrefix(got, "452") {
				time.Sleep(time.Second) // as a client would, later
			}
			return false
		}
		return true
	}
	if !step("", "220") || !step("EHLO load.example.net", "250") {
		return
	}
	for range 5 {
		if stopped() {
			break
		}
		var id string
		id, phase = l.newID()
		rcpt, due := "din@example.org", 1
		if rand.IntN(4) == 0 {
			rcpt, due = "team@example.org", 2
		}
		if !step("MAIL FROM:<load@example.net>", "250") || !step("RCPT TO:<"+rcpt+">", "250") || !step("DATA", "354") {
			return
		}
		body := fmt.Sprintf("From: load@example.net\r\nTo: %s\r\nSubject: soak %s\r\nMessage-ID: <%s>\r\n\r\n%s.\r\n", rcpt, phase, id,
			strings.Repeat("soak line of text, soak line of text, soak line of text\r\n", 1+rand.IntN(20)))
		if _, err := io.WriteString(c, body); err != nil {
			l.record(phase, id, due, "")
			return
		}
		got := reply()
		l.record(phase, id, due, got)
		if !strings.HasPrefix(got, "250") {
			if strings.HasPrefix(got, "452") {
				time.Sleep(time.Second)
			}
			return
		}
		time.Sleep(time.Duration(rand.IntN(400)) * time.Millisecond)
	}
	io.WriteString(c, "QUIT\r\n")
	reply()
}

// soakAccount is the sum of what was acknowledged and delivered.
type soakAccount struct {
	acked, due, delivered, lost, dups, doubtDelivered int
	lostIDs                                           []string
}

var soakIDRe = regexp.MustCompile(`^Message-ID: <(soak\.\d+@example\.net)>`)

// account reads what the sinks received (their dumps, a message after
// each X-Client-Addr line; notices with a null sender left out).
func (l *soakLoad) account(sinks []*sink) soakAccount {
	got := map[string]int{}
	for _, sk := range sinks {
		f, err := os.Open(sk.Dump)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 64<<10), 4<<20)
		null := false
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "X-Client-Addr: "):
				null = false
			case strings.HasPrefix(line, "X-Mail-Args: <>"):
				null = true
			case !null:
				if m := soakIDRe.FindStringSubmatch(line); m != nil {
					got[m[1]]++
				}
			}
		}
		f.Close()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	var a soakAccount
	a.acked = len(l.acked)
	for _, n := range got {
		a.delivered += n
	}
	for id, due := range l.acked {
		a.due += due
		switch n := got[id]; {
		case n < due:
			a.lost += due - n
			a.lostIDs = append(a.lostIDs, id)
		case n > due:
			a.dups += n - due
		}
	}
	for id := range l.doubt {
		if got[id] > 0 {
			a.doubtDelivered++
		}
	}
	sort.Strings(a.lostIDs)
	if len(a.lostIDs) > 10 {
		a.lostIDs = a.lostIDs[:10]
	}
	return a
}
