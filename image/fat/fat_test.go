package fat

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSetTimes makes FAT12, FAT16 and FAT32 file systems with Debian's
// mkfs.vfat and mtools (files in the root and in nested directories, long
// names, more entries than one cluster holds), sets their times, and asks
// mtools and fsck.vfat: every entry has the new time, the contents and the
// file system are intact, and a second pass changes nothing.
func TestSetTimes(t *testing.T) {
	for _, tool := range []string{"mkfs.vfat", "fsck.vfat", "mcopy", "mmd", "mdir", "mtype"} {
		if _, err := exec.LookPath(tool); err != nil {
			if _, err := os.Stat("/usr/sbin/" + tool); err != nil {
				t.Fatalf("%s is not installed: make test installs it (scripts/deps.sh)", tool)
			}
		}
	}
	want := time.Date(2026, 11, 30, 17, 45, 32, 0, time.UTC)
	for _, c := range []struct {
		fat  string
		size string // KiB
	}{{"12", "2048"}, {"16", "65536"}, {"32", "270000"}} {
		t.Run("FAT"+c.fat, func(t *testing.T) {
			dir := t.TempDir()
			img := filepath.Join(dir, "fat.img")
			run(t, "mkfs.vfat", "-F", c.fat, "-C", img, c.size)
			src := filepath.Join(dir, "file.txt")
			os.WriteFile(src, []byte("contents"), 0o644)
			run(t, "mmd", "-i", img, "::EFI", "::EFI/BOOT", "::loader")
			run(t, "mcopy", "-i", img, src, "::cmdline.txt")
			run(t, "mcopy", "-i", img, src, "::EFI/BOOT/a-long-file-name.efi")
			for i := range 40 { // over one cluster of directory entries
				run(t, "mcopy", "-i", img, src, "::loader/entry-with-a-long-name-"+strings.Repeat("x", i%7)+string(rune('a'+i%26))+string(rune('a'+i/26))+".conf")
			}
			f, err := os.OpenFile(img, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			n, err := SetTimes(f, want)
			if err != nil || n < 45 {
				t.Fatalf("SetTimes: %d entries changed, %v", n, err)
			}
			if n, err := SetTimes(f, want); err != nil || n != 0 {
				t.Fatalf("a second SetTimes changed %d entries, %v", n, err)
			}
			out := run(t, "mdir", "-i", img, "-/", "::")
			lines := 0
			for _, l := range strings.Split(out, "\n") {
				if strings.Contains(l, " files ") || !strings.Contains(l, "<DIR>") && !strings.Contains(l, " 8 ") {
					continue
				}
				lines++
				if !strings.Contains(l, "2026-11-30") || !strings.Contains(l, "17:45") {
					t.Errorf("not stamped: %s", l)
				}
			}
			if lines < 45 {
				t.Errorf("mdir shows %d entries:\n%s", lines, out)
			}
			if got := run(t, "mtype", "-i", img, "::EFI/BOOT/a-long-file-name.efi"); got != "contents" {
				t.Errorf("contents: %q", got)
			}
			run(t, "fsck.vfat", "-n", img)
		})
	}
}

func TestSetTimesRefuses(t *testing.T) {
	img := filepath.Join(t.TempDir(), "x")
	os.WriteFile(img, make([]byte, 4096), 0o644)
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := SetTimes(f, time.Now()); err == nil {
		t.Error("no FAT: no error")
	}
	if _, err := SetTimes(f, time.Unix(0, 0)); err == nil {
		t.Error("1970: no error")
	}
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		path = "/usr/sbin/" + name
	}
	cmd := exec.Command(path, args...)
	cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1", "TZ=UTC")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}
