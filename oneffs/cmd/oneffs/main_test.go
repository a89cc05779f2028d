package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"elit.local/internal/testbin"
)

const vectorDir = "../../../../shared/oneffs/vectors"

func TestMain(m *testing.M) { os.Exit(testbin.Run(m)) }

type result struct {
	rc             int
	stdout, stderr string
}

func runCLI(t *testing.T, dir string, stdin []byte, args ...string) result {
	t.Helper()
	// The oneffs command runs as a separate process, exactly as a user
	// runs it.
	cmd := exec.Command(testbin.Build(t, "."), args...)
	cmd.Dir = dir
	cmd.Stdin = bytes.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatal(err)
	}
	return result{cmd.ProcessState.ExitCode(), out.String(), errb.String()}
}

type recorded struct {
	Argv         string
	RC           int
	Stdout       *string
	Stderr       string
	StdoutLen    *int   `json:"stdout_len"`
	StdoutSHA256 string `json:"stdout_sha256"`
}

var failureMsg = regexp.MustCompile(`Failure\("(.*)"\)`)

// TestManifest runs every command the manifest recorded from the original
// CLI and compares exit code, stdout and stderr. Where the original died of
// an uncaught exception (exit 125, a multi-line OCaml trace), ours must say
// the same thing in one line.
func TestManifest(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(vectorDir, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]struct {
		OCamlCLI map[string]recorded `json:"ocaml_cli"`
	}
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	n := 0
	for name, v := range m {
		for cmd, r := range v.OCamlCLI {
			n++
			t.Run(name+"/"+cmd, func(t *testing.T) {
				argv := strings.Fields(r.Argv)
				if argv[0] != "oneffs" {
					t.Fatalf("argv %q", r.Argv)
				}
				got := runCLI(t, vectorDir, nil, argv[1:]...)
				if got.rc != r.RC {
					t.Errorf("exit %d, original %d (stderr %q)", got.rc, r.RC, got.stderr)
				}
				if r.Stdout != nil && got.stdout != *r.Stdout {
					t.Errorf("stdout %q, original %q", got.stdout, *r.Stdout)
				}
				if r.StdoutLen != nil {
					sum := sha256.Sum256([]byte(got.stdout))
					if len(got.stdout) != *r.StdoutLen || hex.EncodeToString(sum[:]) != r.StdoutSHA256 {
						t.Errorf("stdout: %d bytes, original %d", len(got.stdout), *r.StdoutLen)
					}
				}
				if m := failureMsg.FindStringSubmatch(r.Stderr); r.RC == 125 && m != nil {
					if strings.Count(got.stderr, "\n") != 1 || !strings.Contains(strings.ToLower(got.stderr), strings.ToLower(m[1])) {
						t.Errorf("stderr %q, want one line saying %q", got.stderr, m[1])
					}
				} else if got.stderr != r.Stderr {
					t.Errorf("stderr %q, original %q", got.stderr, r.Stderr)
				}
			})
		}
	}
	if n < 16 {
		t.Errorf("only %d recorded commands", n)
	}
}

// TestCreateIdentical: create gives the original's bytes.
func TestCreateIdentical(t *testing.T) {
	cases := []struct{ input, bs, want string }{
		{"inputs/database.json", "", "b1_userdb.img"},
		{"inputs/database.json", "4096", "b3_userdb_bs4096.img"},
		{"inputs/empty.txt", "", "a3_zero_length_file.img"},
		{"inputs/pattern10k.bin", "512", "c1_pattern10k.img"},
	}
	for _, c := range cases {
		t.Run(c.want, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "db.img")
			args := []string{"create", "-i", c.input, "-o", out}
			if c.bs != "" {
				args = append(args, "-b", c.bs)
			}
			if r := runCLI(t, vectorDir, nil, args...); r.rc != 0 || r.stdout != "" || r.stderr != "" {
				t.Fatalf("%+v", r)
			}
			got, _ := os.ReadFile(out)
			want, _ := os.ReadFile(filepath.Join(vectorDir, c.want))
			if !bytes.Equal(got, want) {
				t.Errorf("%d bytes, differ from the original's %d", len(got), len(want))
			}
		})
	}
}

func TestCommands(t *testing.T) {
	db, err := os.ReadFile(filepath.Join(vectorDir, "inputs/database.json"))
	if err != nil {
		t.Fatal(err)
	}
	abs, _ := filepath.Abs(filepath.Join(vectorDir, "inputs/database.json"))
	type step struct {
		args   []string
		stdin  []byte
		rc     int
		stdout string // exact, unless it starts with ~ (a substring)
		stderr string // substring
	}
	cases := []struct {
		name  string
		steps []step
	}{
		{"create refuses to overwrite", []step{
			{args: []string{"create", "-i", abs, "-o", "db.img"}},
			{args: []string{"create", "-i", abs, "-o", "db.img"}, rc: 124, stderr: "option '-o': db.img already exists"},
		}},
		{"create needs its options", []step{
			{args: []string{"create", "-o", "db.img"}, rc: 124, stderr: "required option -i is missing"},
			{args: []string{"create", "-i", "missing.json", "-o", "db.img"}, rc: 124, stderr: "no 'missing.json' file"},
			{args: []string{"info", "db.img"}, rc: 124, stderr: "no 'db.img' file or directory"},
		}},
		{"create with a tiny sector size makes no file", []step{
			{args: []string{"create", "-b", "17", "-i", abs, "-o", "db.img"}, rc: 125, stderr: "sector size too small"},
			{args: []string{"info", "db.img"}, rc: 124},
		}},
		{"bad option values", []step{
			{args: []string{"create", "-i", abs, "-o", "db.img"}},
			{args: []string{"get", "-b", "-1", "db.img"}, rc: 124, stderr: "needs an argument"},
			{args: []string{"get", "-b", "x", "db.img"}, rc: 124, stderr: "expected an integer"},
			{args: []string{"get", "-b", "0", "db.img"}, rc: 125, stderr: "sector size too small"},
			{args: []string{"get", "--bogus", "db.img"}, rc: 124, stderr: "unknown option"},
			{args: []string{"get", "db.img", "other.img"}, rc: 124, stderr: "too many arguments"},
			{args: []string{"frobnicate"}, rc: 124, stderr: "unknown command"},
			{args: []string{"set", "--format", "zfs", "db.img"}, rc: 124, stderr: "unknown format"},
		}},
		{"create with room, set, get, delete", []step{
			{args: []string{"create", "--size", "64K", "-i", abs, "-o", "db.img"}},
			{args: []string{"info", "db.img"}, stdout: "Set and contains 83 bytes of data.\n"},
			{args: []string{"set", "db.img"}, stdin: bytes.Repeat(db, 100)},
			{args: []string{"info", "db.img"}, stdout: "Set and contains 8300 bytes of data.\n"},
			{args: []string{"get", "db.img"}, stdout: string(bytes.Repeat(db, 100))},
			{args: []string{"delete", "db.img"}},
			{args: []string{"get", "db.img"}, rc: 1, stderr: "No data.\n"},
			{args: []string{"verify", "db.img"}, stdout: "~file: none"},
		}},
		{"set that does not fit keeps the old file", []step{
			{args: []string{"create", "-i", abs, "-o", "db.img"}},
			{args: []string{"set", "db.img"}, stdin: make([]byte, 513), rc: 2, stderr: "does not fit"},
			{args: []string{"get", "db.img"}, stdout: string(db)},
		}},
		{"format creates and clears", []step{
			{args: []string{"format", "new.img"}, rc: 124, stderr: "give --size"},
			{args: []string{"format", "--size", "1M", "new.img"}},
			{args: []string{"info", "new.img"}, stdout: "Unset.\n"},
			{args: []string{"set", "new.img"}, stdin: db},
			{args: []string{"format", "new.img"}},
			{args: []string{"info", "new.img"}, stdout: "Unset.\n"},
			{args: []string{"verify", "new.img"}, stdout: "~device: new.img, 1048576 bytes, 2048 sectors of 512 bytes"},
		}},
		{"fail-safe", []step{
			{args: []string{"create", "--format", "fail-safe", "-i", abs, "-o", "fs.img", "--size", "8K"}},
			{args: []string{"get", "fs.img"}, stdout: string(db)},
			{args: []string{"set", "fs.img"}, stdin: []byte("[]")},
			{args: []string{"get", "fs.img"}, stdout: "[]"},
			{args: []string{"verify", "fs.img"}, stdout: "~write counter 2"},
			{args: []string{"format", "--format", "fail-safe", "--size", "100", "-b", "100", "odd.img"}, rc: 125, stderr: "sector size too small"},
		}},
		{"set overwrites a corrupt header", []step{
			{args: []string{"create", "-i", abs, "-o", "db.img"}},
			{args: []string{"corrupt", "db.img"}},
			{args: []string{"info", "db.img"}, rc: 125, stderr: "bad header: bad CRC"},
			{args: []string{"verify", "db.img"}, rc: 2, stdout: "~damaged: bad header: bad CRC"},
			{args: []string{"set", "db.img"}, stdin: db},
			{args: []string{"get", "db.img"}, stdout: string(db)},
		}},
		{"damaged data", []step{
			{args: []string{"create", "-i", abs, "-o", "db.img"}},
			{args: []string{"corrupt-data", "db.img"}},
			{args: []string{"get", "db.img"}, rc: 2, stderr: "Bad checksum\n"},
			{args: []string{"verify", "db.img"}, rc: 2, stdout: "~damaged: data: bad checksum"},
		}},
		{"not an image", []step{
			{args: []string{"mkfile", "odd.img"}},
			{args: []string{"info", "odd.img"}, rc: 125, stderr: "not a multiple of the sector size"},
			{args: []string{"info", "."}, rc: 125, stderr: "not a regular file or block device"},
		}},
		{"help", []step{
			{args: []string{"--help"}, stdout: "~Commands:"},
			{args: []string{}, stdout: "~Commands:"},
			{args: []string{"create", "--help"}, stdout: "~--size=SIZE"},
			{args: []string{"verify", "-h"}, stdout: "~Usage: oneffs verify"},
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			for i, s := range c.steps {
				switch append(s.args, "")[0] { // test-only steps that damage a file
				case "corrupt", "corrupt-data", "mkfile":
					path := filepath.Join(dir, s.args[1])
					b, _ := os.ReadFile(path)
					switch s.args[0] {
					case "corrupt":
						b[5] ^= 1
					case "corrupt-data":
						b[512] ^= 1
					default:
						b = make([]byte, 1000)
					}
					os.WriteFile(path, b, 0o644)
					continue
				}
				r := runCLI(t, dir, s.stdin, s.args...)
				if r.rc != s.rc {
					t.Fatalf("step %d %q: exit %d, want %d; stderr %q", i, s.args, r.rc, s.rc, r.stderr)
				}
				if want, ok := strings.CutPrefix(s.stdout, "~"); ok {
					if !strings.Contains(r.stdout, want) {
						t.Errorf("step %d %q: stdout %q, want it to contain %q", i, s.args, r.stdout, want)
					}
				} else if r.stdout != s.stdout {
					t.Errorf("step %d %q: stdout %q, want %q", i, s.args, r.stdout, s.stdout)
				}
				if !strings.Contains(r.stderr, s.stderr) {
					t.Errorf("step %d %q: stderr %q, want %q", i, s.args, r.stderr, s.stderr)
				}
				if strings.Contains(r.stderr, "goroutine") || strings.Count(r.stderr, "\n") > 3 {
					t.Errorf("step %d: stderr is not a clear error: %q", i, r.stderr)
				}
			}
		})
	}
}

// TestBlockDevice runs the CLI on a real block device: a loop device with
// 4096-byte logical sectors, whose size the CLI must take from the kernel.
// It needs root and losetup (CI has both); otherwise it is skipped.
func TestBlockDevice(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for losetup")
	}
	if _, err := exec.LookPath("losetup"); err != nil {
		t.Skip("needs losetup (util-linux)")
	}
	backing := filepath.Join(t.TempDir(), "disk")
	if err := os.WriteFile(backing, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	os.Truncate(backing, 1<<20)
	out, err := exec.Command("losetup", "--find", "--show", "--sector-size", "4096", backing).CombinedOutput()
	if err != nil {
		t.Skipf("losetup: %v: %s", err, out)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() { exec.Command("losetup", "-d", dev).Run() })

	db, _ := os.ReadFile(filepath.Join(vectorDir, "inputs/database.json"))
	dir := t.TempDir()
	for _, s := range []struct {
		args   []string
		stdin  []byte
		rc     int
		stdout string
	}{
		{args: []string{"format", dev}},
		{args: []string{"info", dev}, stdout: "Unset.\n"},
		{args: []string{"set", dev}, stdin: db},
		{args: []string{"get", dev}, stdout: string(db)},
		{args: []string{"get", "-b", "512", dev}, rc: 2},
		{args: []string{"verify", dev}, stdout: "device: " + dev + ", 1048576 bytes, 256 sectors of 4096 bytes\nformat: classic\nfile: 83 bytes, CRC-32 0xacf92cfa\ndata: ok\n"},
		{args: []string{"format", "--format", "fail-safe", dev}},
		{args: []string{"set", dev}, stdin: db},
		{args: []string{"get", dev}, stdout: string(db)},
		{args: []string{"format", "--size", "2M", dev}, rc: 124},
	} {
		r := runCLI(t, dir, s.stdin, s.args...)
		if r.rc != s.rc || (s.rc == 0 && r.stdout != s.stdout) {
			t.Fatalf("%q: exit %d, stdout %q, stderr %q; want exit %d, stdout %q", s.args, r.rc, r.stdout, r.stderr, s.rc, s.stdout)
		}
	}
	// The data is on the device, sector size 4096: the header in sector 0
	// and the fail-safe chain from sector 1 on.
	raw, _ := os.ReadFile(backing)
	if !bytes.Contains(raw[4096:8192], db) {
		t.Errorf("the data is not in sector 1 of the device")
	}
	// A device in exclusive use (as when mounted) is refused.
	f, err := os.OpenFile(dev, os.O_RDONLY|syscall.O_EXCL, 0)
	if err != nil {
		t.Fatal(err)
	}
	r := runCLI(t, dir, nil, "get", dev)
	f.Close()
	if r.rc != 125 || !strings.Contains(r.stderr, "mounted or in use") {
		t.Errorf("busy device: exit %d, %q", r.rc, r.stderr)
	}
}
