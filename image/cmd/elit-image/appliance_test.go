package main

// The appliance, end to end: images built with monogok, judged by Debian's
// tools (sfdisk, fsck.vfat, unsquashfs, e2fsck) and by oneffs, then booted
// in QEMU under software emulation and driven with swaks, smtp-sink, the
// update protocol and a power cut. make test installs the tools.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"elit.local/image/gpt"
	"elit.local/internal/freeport"
	"elit.local/internal/testbin"
	"elit.local/oneffs"
)

func needTools(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if strings.HasPrefix(tool, "/") {
			if _, err := os.Stat(tool); err != nil {
				t.Fatalf("%s is missing: make test installs it", tool)
			}
			continue
		}
		if _, err := exec.LookPath(tool); err != nil {
			if _, err := os.Stat("/usr/sbin/" + tool); err != nil {
				t.Fatalf("%s is not installed: make test installs it (scripts/deps.sh)", tool)
			}
		}
	}
}

func sbin(tool string) string {
	if p, err := exec.LookPath(tool); err == nil {
		return p
	}
	return "/usr/sbin/" + tool
}

func TestMain(m *testing.M) { os.Exit(testbin.Run(m)) }

// tool is elit-image, run as a separate program (qemu execs QEMU in its
// place).
func tool(t *testing.T) string {
	t.Helper()
	return testbin.Build(t, ".")
}

func runTool(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(tool(t), args...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

const demoDB = "../../../appliance/demo/users.json"

func buildImage(t *testing.T, out string, args ...string) string {
	t.Helper()
	start := time.Now()
	o, err := runTool(t, append([]string{"build", "-o", out}, args...)...)
	if err != nil {
		t.Fatalf("build: %v\n%s", err, o)
	}
	t.Logf("built %s in %.1fs: %s", filepath.Base(out), time.Since(start).Seconds(), strings.TrimSpace(o))
	return o
}

// cut copies partition p of an image to its own file.
func cut(t *testing.T, img string, p gpt.Partition) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), fmt.Sprintf("p%d", p.Index))
	o, err := exec.Command("dd", "if="+img, "of="+out, "bs=1M", "iflag=skip_bytes,count_bytes",
		"skip="+strconv.FormatInt(p.Offset(), 10), "count="+strconv.FormatInt(p.Size(), 10), "conv=sparse").CombinedOutput()
	if err != nil {
		t.Fatalf("dd: %v: %s", err, o)
	}
	return out
}

func TestImageStatic(t *testing.T) {
	if testing.Short() {
		t.Skip("builds gokrazy images")
	}
	needTools(t, "sfdisk", "fsck.vfat", "unsquashfs", "e2fsck", "mkfs.ext4", "dd")
	db, err := os.ReadFile(demoDB)
	if err != nil {
		t.Fatal(err)
	}
	for _, target := range []string{"vm", "arm64", "rpi"} {
		t.Run(target, func(t *testing.T) {
			img := filepath.Join(t.TempDir(), target+".img")
			said := buildImage(t, img, "-target", target, "-db", demoDB, "-domain", "example.org")
			// Without an instance or password and key files, the build
			// makes them and says that another would differ.
			if !strings.Contains(said, "not reproducible: a new random password") || !strings.Contains(said, "a new TLS key") {
				t.Errorf("build without inputs:\n%s", said)
			}

			out, err := exec.Command(sbin("sfdisk"), "--json", img).Output()
			if err != nil {
				t.Fatalf("sfdisk --json: %v", err)
			}
			var pt struct {
				PartitionTable struct {
					Label      string
					Partitions []struct{ Name string }
				}
			}
			if err := json.Unmarshal(out, &pt); err != nil {
				t.Fatal(err)
			}
			if pt.PartitionTable.Label != "gpt" || len(pt.PartitionTable.Partitions) != 5 || pt.PartitionTable.Partitions[4].Name != "oneffs" {
				t.Fatalf("sfdisk --json: %s", out)
			}
			if out, err := exec.Command(sbin("sfdisk"), "-d", img).CombinedOutput(); err != nil {
				t.Fatalf("sfdisk -d: %v: %s", err, out)
			}
			if out, err := exec.Command(sbin("sfdisk"), "--verify", img).CombinedOutput(); err != nil || !strings.Contains(string(out), "No errors detected") {
				t.Fatalf("sfdisk --verify: %v: %s", err, out)
			}

			f, err := os.Open(img)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			tab, err := gpt.Read(f)
			if err != nil {
				t.Fatal(err)
			}
			part := map[int]gpt.Partition{}
			for _, p := range tab.Partitions {
				part[p.Index] = p
			}
			if out, err := exec.Command(sbin("fsck.vfat"), "-n", cut(t, img, part[1])).CombinedOutput(); err != nil {
				t.Fatalf("fsck.vfat -n (boot): %v: %s", err, out)
			}
			list, err := exec.Command("unsquashfs", "-l", "-o", strconv.FormatInt(part[2].Offset(), 10), img).CombinedOutput()
			if err != nil || !strings.Contains(string(list), "/user/elit") || !strings.Contains(string(list), "/gokrazy/init") ||
				strings.Contains(string(list), "/lib/modules") {
				t.Fatalf("unsquashfs -l (root): %v: %s", err, list)
			}
			// The appliance's root file system: stripped programs,
			// nothing it does not run.
			if n := bytesUsed(f, part[2].Offset()); n > maxRoot {
				t.Errorf("root file system %.1f MiB, over %.0f MiB", float64(n)/(1<<20), float64(maxRoot)/(1<<20))
			}
			if out, err := exec.Command(sbin("e2fsck"), "-n", "-f", cut(t, img, part[4])).CombinedOutput(); err != nil {
				t.Fatalf("e2fsck -n (perm): %v: %s", err, out)
			}
			p5 := cut(t, img, part[5])
			got, err := exec.Command("go", "run", "elit.local/oneffs/cmd/oneffs", "get", p5).Output()
			if err != nil {
				t.Fatalf("oneffs get (partition 5): %v", err)
			}
			if !bytes.Equal(got, db) {
				t.Fatalf("oneffs get: %q, want the database", got)
			}
			im, err := oneffs.Open(p5, oneffs.WithReadOnly())
			if err != nil {
				t.Fatal(err)
			}
			defer im.Close()
			if info, err := im.Stat(); err != nil || info.Format != oneffs.FailSafe {
				t.Fatalf("partition 5: %+v, %v; want fail-safe", info, err)
			}
		})
	}
}

// maxRoot is the largest root file system the issue allows (#16).
const maxRoot = 20 << 20

// TestReproducible builds an instance's image twice from the same source
// (the same source date: the tree may have uncommitted changes),
// database, settings, password and key, and finds the same bytes, the
// SHA-256 build printed, and sha256sum agreeing.
func TestReproducible(t *testing.T) {
	if testing.Short() {
		t.Skip("builds gokrazy images")
	}
	needTools(t, "mkfs.ext4", "mksquashfs", "unsquashfs", "sha256sum", "cmp")
	dir := t.TempDir()
	t.Setenv("ELIT_INSTANCES", dir)
	t.Setenv("SOURCE_DATE_EPOCH", "1767225600")
	if out, err := runTool(t, "new", "-i", "r", "-db", demoDB, "-domain", "example.org", "-elit-flag=-max-hops=30"); err != nil {
		t.Fatalf("new: %v\n%s", err, out)
	}
	var sums []string
	for _, name := range []string{"a.img", "b.img"} {
		img := filepath.Join(dir, name)
		out := buildImage(t, img, "-i", "r")
		if !strings.Contains(out, "\nreproducible: ") {
			t.Errorf("build does not say it is reproducible:\n%s", out)
		}
		sum, err := exec.Command("sha256sum", img).Output()
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out, string(sum)) {
			t.Errorf("build printed another SHA-256 than sha256sum's %s:\n%s", sum, out)
		}
		sums = append(sums, strings.Fields(string(sum))[0])
	}
	if out, err := exec.Command("cmp", filepath.Join(dir, "a.img"), filepath.Join(dir, "b.img")).CombinedOutput(); err != nil || sums[0] != sums[1] {
		t.Fatalf("two builds differ: %v %s\n%s", sums, out, diffRegions(t, filepath.Join(dir, "a.img"), filepath.Join(dir, "b.img")))
	}
}

// diffRegions names the partitions where two images differ.
func diffRegions(t *testing.T, a, b string) string {
	out, _ := exec.Command("cmp", "-l", a, b).Output()
	f, err := os.Open(a)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	tab, err := gpt.Read(f)
	if err != nil {
		return err.Error()
	}
	seen := map[string]int{}
	for _, l := range strings.Split(string(out), "\n") {
		fs := strings.Fields(l)
		if len(fs) == 0 {
			continue
		}
		off, _ := strconv.ParseInt(fs[0], 10, 64)
		where := "outside the partitions"
		for _, p := range tab.Partitions {
			if off-1 >= p.Offset() && off-1 < p.Offset()+p.Size() {
				where = fmt.Sprintf("partition %d at +%d", p.Index, (off-1-p.Offset())&^4095)
			}
		}
		seen[where]++
	}
	return fmt.Sprint(seen)
}

// vm is an appliance in QEMU, built from an instance, with its forwards
// and host-side sink.
type vm struct {
	t                                *testing.T
	name, dir                        string // the instance
	smtp, submission, update, status int
	sinkPort                         int
	sinkDir                          string
	qemu, sink                       *exec.Cmd
}

// newAppliance makes instance name for target in $ELIT_INSTANCES
// (t.Setenv by the caller), its appliance reachable through QEMU's
// forwards on 127.0.0.1, relaying to the sink, and builds its image.
func newAppliance(t *testing.T, name, target string, elitFlags ...string) *vm {
	t.Helper()
	dir := filepath.Join(os.Getenv("ELIT_INSTANCES"), name)
	v := &vm{t: t, name: name, dir: dir, sinkDir: filepath.Join(os.Getenv("ELIT_INSTANCES"), name+"-sink"),
		smtp: freeport.Get(t), submission: freeport.Get(t), update: freeport.Get(t), status: freeport.Get(t), sinkPort: freeport.Get(t)}
	os.Chmod(filepath.Dir(v.sinkDir), 0o755)
	os.Chmod(filepath.Dir(filepath.Dir(v.sinkDir)), 0o711) // smtp-sink runs as nobody
	os.Mkdir(v.sinkDir, 0o777)
	os.Chmod(v.sinkDir, 0o777) // smtp-sink writes as nobody
	args := []string{"new", "-i", name, "-target", target, "-db", demoDB, "-domain", "example.org", "-hostname", "mail.example.org",
		"-host", "127.0.0.1", "-update-port", strconv.Itoa(v.update), "-status-port", strconv.Itoa(v.status), "-smtp-port", strconv.Itoa(v.smtp),
		"-elit-flag=-smarthost=" + sinkAddr, "-elit-flag=-retry-first=2s", "-elit-flag=-retry-max=4s"}
	for _, f := range elitFlags {
		args = append(args, "-elit-flag="+f)
	}
	if out, err := runTool(t, args...); err != nil {
		t.Fatalf("new: %v\n%s", err, out)
	}
	start := time.Now()
	out, err := runTool(t, "build", "-i", name)
	if err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	t.Logf("built %s in %.1fs: %s", name, time.Since(start).Seconds(), strings.TrimSpace(out))
	t.Cleanup(func() {
		v.powerCut()
		v.stopSink()
	})
	return v
}

func (v *vm) boot() {
	v.t.Helper()
	cmd := exec.Command(tool(v.t), "qemu", "-i", v.name, "-submission", strconv.Itoa(v.submission), "-submissions", "0", "-http", "0",
		"-sink", "127.0.0.1:"+strconv.Itoa(v.sinkPort))
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		v.t.Fatal(err)
	}
	v.qemu = cmd
	start := time.Now()
	if _, err := v.waitStatus(func(s *applianceState) bool { return true }, 5*time.Minute); err != nil {
		v.t.Fatalf("boot: %v", err)
	}
	v.t.Logf("boot to status page: %.1fs", time.Since(start).Seconds())
}

// powerCut kills QEMU: the disk is left as a power cut leaves it.
func (v *vm) powerCut() {
	if v.qemu != nil {
		v.qemu.Process.Signal(syscall.SIGKILL)
		v.qemu.Wait()
		v.qemu = nil
	}
}

func (v *vm) startSink() {
	v.t.Helper()
	cmd := exec.Command(sbin("smtp-sink"), "-u", "nobody", "-d", v.sinkDir+"/%M.", "127.0.0.1:"+strconv.Itoa(v.sinkPort), "10")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		v.t.Fatal(err)
	}
	v.sink = cmd
	for i := 0; i < 100; i++ {
		if c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(v.sinkPort)); err == nil {
			c.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	v.t.Fatal("smtp-sink did not start")
}

func (v *vm) stopSink() {
	if v.sink != nil {
		v.sink.Process.Kill()
		v.sink.Wait()
		v.sink = nil
	}
}

// sunk returns the messages the sink received that contain marker.
func (v *vm) sunk(marker string) int {
	n := 0
	entries, _ := os.ReadDir(v.sinkDir)
	for _, e := range entries {
		b, _ := os.ReadFile(filepath.Join(v.sinkDir, e.Name()))
		if bytes.Contains(b, []byte(marker)) {
			n++
		}
	}
	return n
}

func (v *vm) waitSunk(marker string, timeout time.Duration) {
	v.t.Helper()
	for end := time.Now().Add(timeout); time.Now().Before(end); time.Sleep(time.Second) {
		if v.sunk(marker) > 0 {
			return
		}
	}
	v.t.Fatalf("no message with %q reached the sink in %v", marker, timeout)
}

// device is the appliance as the instance knows it (TLS, its key pinned).
func (v *vm) device() *device {
	v.t.Helper()
	var ep endpoints
	d, err := (&deviceFlags{instance: v.name}).resolve(nil, "", &ep)
	if err != nil {
		v.t.Fatal(err)
	}
	return d
}

func (v *vm) waitStatus(ok func(*applianceState) bool, timeout time.Duration) (*applianceState, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var last error
	d := v.device()
	for ctx.Err() == nil {
		st, err := d.state(ctx)
		if err == nil && ok(st) {
			return st, nil
		}
		last = err
		sleep(ctx, time.Second)
	}
	return nil, fmt.Errorf("no status after %v: %v", timeout, last)
}

func (v *vm) swaks(args ...string) (string, error) {
	out, err := exec.Command("swaks", append([]string{"--helo", "client.example.net", "--timeout", "60"}, args...)...).CombinedOutput()
	return string(out), err
}

func (v *vm) submit(user, password, marker string) {
	v.t.Helper()
	out, err := v.swaks("--server", "127.0.0.1:"+strconv.Itoa(v.submission), "-tls", "--auth-user", user, "--auth-password", password,
		"--from", user+"@example.org", "--to", "friend@example.net", "--header", "Subject: "+marker, "--body", marker)
	if err != nil || !strings.Contains(out, "250 2.0.0") {
		v.t.Fatalf("submission as %s: %v\n%s", user, err, out)
	}
}

// editInstance changes the instance's settings as a user would, in its
// instance.json.
func (v *vm) editInstance(edit func(*instanceSettings)) {
	v.t.Helper()
	in, err := loadInstance(v.name)
	if err != nil {
		v.t.Fatal(err)
	}
	edit(&in.instanceSettings)
	b, _ := json.MarshalIndent(in.instanceSettings, "", "  ")
	if err := os.WriteFile(in.file(instanceFile), b, 0o644); err != nil {
		v.t.Fatal(err)
	}
}

func TestApplianceQEMU(t *testing.T) {
	if testing.Short() {
		t.Skip("boots the appliance in QEMU")
	}
	needTools(t, "qemu-system-x86_64", machines["vm"].code, machines["vm"].vars, "swaks", "smtp-sink", "mkfs.ext4", "dd", "mksquashfs")
	t.Setenv("ELIT_INSTANCES", t.TempDir())
	v := newAppliance(t, "elit", "vm")
	v.startSink()
	v.boot()

	t.Run("submit", func(t *testing.T) {
		v.t = t
		v.submit("din", "demo", "marker-submit")
		v.waitSunk("marker-submit", 2*time.Minute)
		out, _ := v.swaks("--server", "127.0.0.1:"+strconv.Itoa(v.smtp), "--from", "someone@example.net", "--to", "nobody@example.org", "--quit-after", "RCPT")
		if !strings.Contains(out, "<** 550 5.1.1") {
			t.Fatalf("unknown local user not refused at RCPT:\n%s", out)
		}
	})

	t.Run("db push", func(t *testing.T) {
		v.t = t
		users := addUser(t, "bob", "bob-secret")
		db2 := filepath.Join(t.TempDir(), "db2.json")
		os.WriteFile(db2, users, 0o644)
		out, _ := v.swaks("--server", "127.0.0.1:"+strconv.Itoa(v.submission), "-tls", "--auth-user", "bob", "--auth-password", "bob-secret", "--quit-after", "AUTH")
		if !strings.Contains(out, "535") {
			t.Fatalf("bob logged in before the push:\n%s", out)
		}
		o, err := runTool(t, "db", "push", "-i", v.name, db2)
		if err != nil || !strings.Contains(o, "3 addresses") {
			t.Fatalf("db push: %v\n%s", err, o)
		}
		v.submit("bob", "bob-secret", "marker-bob")
		v.waitSunk("marker-bob", 2*time.Minute)

		bad := filepath.Join(t.TempDir(), "bad.json")
		os.WriteFile(bad, []byte(`[{"name":"carol","password":"x","mailboxes":["not an address"]},{"name":"carol","mailboxes":[]}]`), 0o644)
		o, err = runTool(t, "db", "push", "-i", v.name, bad)
		if err == nil || !strings.Contains(o, "422") || !strings.Contains(o, "carol") {
			t.Fatalf("a corrupt database was not refused with its reasons: %v\n%s", err, o)
		}
		t.Logf("refused: %s", o)

		// A key other than the appliance's: the push stops at the TLS
		// handshake (the database without bob is never sent).
		other, _, err := makeKeyPair("mail.example.org")
		if err != nil {
			t.Fatal(err)
		}
		wrong, _ := pinOf(other)
		o, err = runTool(t, "db", "push", "-host", "127.0.0.1:"+strconv.Itoa(v.status), "-password-file", filepath.Join(v.dir, passwordFile), "-pin", wrong, demoDB)
		if err == nil || !strings.Contains(o, "not the pinned one") {
			t.Fatalf("db push with a wrong pin: %v\n%s", err, o)
		}
		// Plain HTTP is refused too.
		o, err = runTool(t, "db", "push", "-host", "127.0.0.1:"+strconv.Itoa(v.status), "-password-file", filepath.Join(v.dir, passwordFile), "-insecure-http", demoDB)
		if err == nil {
			t.Fatalf("db push over plain HTTP:\n%s", o)
		}
		v.submit("bob", "bob-secret", "marker-bob-2") // the pushed database stays
	})

	t.Run("power cut", func(t *testing.T) {
		v.t = t
		v.stopSink() // the destination is unreachable
		v.submit("din", "demo", "marker-powercut")
		if _, err := v.waitStatus(func(s *applianceState) bool { return s.Queue.Pending > 0 }, time.Minute); err != nil {
			t.Fatalf("not queued: %v", err)
		}
		time.Sleep(3 * time.Second) // an attempt or two fail
		v.powerCut()
		v.boot()
		st, err := v.waitStatus(func(s *applianceState) bool { return true }, time.Minute)
		if err != nil || st.Queue.Pending == 0 {
			t.Fatalf("after the power cut the message is not queued: %+v %v", st, err)
		}
		v.startSink()
		v.waitSunk("marker-powercut", 2*time.Minute)
		if _, err := v.waitStatus(func(s *applianceState) bool { return s.Queue.Messages == 0 }, time.Minute); err != nil {
			t.Fatalf("queue not empty after delivery: %v", err)
		}
	})

	t.Run("update", func(t *testing.T) {
		v.t = t
		before, err := v.waitStatus(func(*applianceState) bool { return true }, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		// The instance changes; update -i builds it and installs it.
		v.editInstance(func(s *instanceSettings) { s.ElitFlags = append(s.ElitFlags, "-max-hops=40") })
		start := time.Now()
		out, err := runTool(t, "update", "-i", v.name)
		if err != nil || !strings.Contains(out, "one reboot") {
			t.Fatalf("update -i %s: %v\n%s", v.name, err, out)
		}
		t.Logf("update from the instance (build, upload, trial boot, checks, switch): %.1fs\n%s", time.Since(start).Seconds(), out)
		want, _ := readTrimmed(filepath.Join(v.dir, imageFile+".version"))
		trial, err := v.waitStatus(func(*applianceState) bool { return true }, time.Minute)
		if err != nil || trial.Version != want || !trial.Boot.Trial {
			t.Fatalf("after the update: %+v, %v; want version %s in its trial boot", trial, err, want)
		}
		v.submit("bob", "bob-secret", "marker-v2") // /perm and the database partition survived
		v.waitSunk("marker-v2", 2*time.Minute)
		if st, err := v.device().state(context.Background()); err != nil || !st.Started.Equal(trial.Started) {
			t.Fatalf("the appliance rebooted a second time: %+v %v", st, err)
		}

		// Permanent: the next boot, a power cut's, starts the new root.
		v.powerCut()
		v.boot()
		st, err := v.waitStatus(func(*applianceState) bool { return true }, time.Minute)
		if err != nil || st.Version != want || st.Boot.Trial || st.Boot.RootPartition == before.Boot.RootPartition {
			t.Fatalf("after a power cut: %+v, %v; want version %s on the other root partition than %d", st, err, want, before.Boot.RootPartition)
		}

		// An elit that exits at once (a bad certificate path): the trial
		// fails and the version before comes back by itself.
		broken := filepath.Join(t.TempDir(), "broken.img")
		if out, err := runTool(t, "build", "-i", v.name, "-o", broken, "-elit-flag=-tls-cert=/nonexistent", "-elit-flag=-tls-key=/nonexistent"); err != nil {
			t.Fatalf("build: %v\n%s", err, out)
		}
		out, err = runTool(t, "update", "-i", v.name, "-timeout", "150s", broken)
		if err == nil || !strings.Contains(out, "is running again") {
			t.Fatalf("update to a broken build: %v\n%s", err, out)
		}
		t.Logf("broken update refused: %s", out)
		st, err = v.waitStatus(func(*applianceState) bool { return true }, time.Minute)
		if err != nil || st.Version != want || st.Boot.Trial {
			t.Fatalf("after the broken update: %+v, %v; want %s back", st, err, want)
		}

		// A truncated image is refused before anything is sent.
		trunc := filepath.Join(t.TempDir(), "trunc.img")
		if err := copyFile(broken, trunc); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(trunc+".version", []byte("v3\n"), 0o644)
		os.Truncate(trunc, 110<<20) // into the root file system
		out, err = runTool(t, "update", "-i", v.name, trunc)
		if err == nil || !strings.Contains(out, "truncated") {
			t.Fatalf("update with a truncated image: %v\n%s", err, out)
		}
		if st, err := v.device().state(context.Background()); err != nil || st.Version != want {
			t.Fatalf("after the truncated update: %+v, %v", st, err)
		}
	})
}

// TestApplianceARM64 boots the arm64 image (gokrazy's generic arm64
// kernel, UEFI, QEMU's virt machine under software emulation) and sends a
// message through it as TestApplianceQEMU does: submission in, relayed
// out. make test-arm64 runs it (ELIT_TEST_ARM64=1); make test does not.
func TestApplianceARM64(t *testing.T) {
	if os.Getenv("ELIT_TEST_ARM64") == "" {
		t.Skip("make test-arm64 runs it (ELIT_TEST_ARM64=1)")
	}
	needTools(t, "qemu-system-aarch64", machines["arm64"].code, machines["arm64"].vars, "swaks", "smtp-sink", "mkfs.ext4", "mksquashfs")
	t.Setenv("ELIT_INSTANCES", t.TempDir())
	start := time.Now()
	v := newAppliance(t, "elit-arm64", "arm64")
	v.startSink()
	v.boot()
	v.submit("din", "demo", "marker-arm64")
	v.waitSunk("marker-arm64", 2*time.Minute)
	out, _ := v.swaks("--server", "127.0.0.1:"+strconv.Itoa(v.smtp), "--from", "someone@example.net", "--to", "nobody@example.org", "--quit-after", "RCPT")
	if !strings.Contains(out, "<** 550 5.1.1") {
		t.Fatalf("unknown local user not refused at RCPT:\n%s", out)
	}
	if st, err := v.waitStatus(func(*applianceState) bool { return true }, time.Minute); err != nil || st.Boot.RootPartition != 2 {
		t.Fatalf("status: %+v %v", st, err)
	}
	t.Logf("arm64: built, booted, relayed in %.1fs", time.Since(start).Seconds())
}

// addUser returns the demo database plus a user made with elit passwd.
func addUser(t *testing.T, name, password string) []byte {
	t.Helper()
	cmd := exec.Command("go", "run", "elit.local/elit/cmd/elit", "passwd", "-name", name, "-mailbox", name+"@example.net")
	cmd.Stdin = strings.NewReader(password + "\n")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("elit passwd: %v", err)
	}
	var users []json.RawMessage
	b, err := os.ReadFile(demoDB)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &users); err != nil {
		t.Fatal(err)
	}
	users = append(users, json.RawMessage(out))
	b, _ = json.Marshal(users)
	return b
}
