package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// testImage is a small fake gokrazy image: what flash checks (a GPT with a
// squashfs in partition 2 and a FAT in partition 1) cut from a real build
// would be 2 GB, so the tests use the layout with tiny partitions.
func testImage(t *testing.T) string {
	t.Helper()
	img := filepath.Join(t.TempDir(), "small.img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	f.Truncate(16 << 20)
	f.Close()
	// sfdisk makes the GPT; the tests fill the partitions' first bytes.
	script := "label: gpt\nstart=2048, size=4096, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B\nstart=6144, size=8192\nstart=14336, size=8192\n"
	cmd := exec.Command(sbin("sfdisk"), "-q", img)
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sfdisk: %v: %s", err, out)
	}
	f, err = os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.WriteAt([]byte{0x55, 0xaa}, 2048*512+510)
	sb := make([]byte, 96)
	copy(sb, "hsqs")
	sb[40], sb[41] = 0x00, 0x20 // bytes_used 8192
	f.WriteAt(sb, 6144*512)
	f.WriteAt(bytes.Repeat([]byte("elit"), 1000), 8<<20)
	return img
}

func TestFlashFile(t *testing.T) {
	needTools(t, "sfdisk")
	img := testImage(t)
	target := filepath.Join(t.TempDir(), "disk")
	os.WriteFile(target, make([]byte, 32<<20), 0o644)
	var out bytes.Buffer
	err := flash(context.Background(), img, target, false, "/", strings.NewReader("n\n"), &out, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "not confirmed") {
		t.Fatalf("without a yes: %v", err)
	}
	if err := flash(context.Background(), img, target, false, "/", strings.NewReader("y\n"), &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(img)
	b, _ := os.ReadFile(target)
	if !bytes.Equal(a, b[:len(a)]) {
		t.Fatal("the target does not hold the image")
	}
	small := filepath.Join(t.TempDir(), "small")
	os.WriteFile(small, make([]byte, 1<<20), 0o644)
	if err := flash(context.Background(), img, small, true, "/", nil, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "needs") {
		t.Fatalf("a too small disk: %v", err)
	}
	// A truncated image is refused.
	trunc := filepath.Join(t.TempDir(), "trunc.img")
	os.WriteFile(trunc, a[:5<<20], 0o644)
	if err := flash(context.Background(), trunc, target, true, "/", nil, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "truncated") {
		t.Fatalf("a truncated image: %v", err)
	}
}

// TestFlashRefuses checks, on loop devices, that flash writes a whole disk
// and refuses a mounted one, and that the disk of / is refused (checked
// only: nothing is ever written to it).
func TestFlashRefuses(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("loop devices need root")
	}
	needTools(t, "sfdisk", "losetup", "mkfs.ext4")
	img := testImage(t)
	loop := func(size int64) string {
		f := filepath.Join(t.TempDir(), "backing")
		os.WriteFile(f, nil, 0o644)
		os.Truncate(f, size)
		out, err := exec.Command(sbin("losetup"), "-f", "--show", f).Output()
		if err != nil {
			t.Skipf("losetup: %v (no loop devices here)", err)
		}
		dev := strings.TrimSpace(string(out))
		t.Cleanup(func() { exec.Command(sbin("losetup"), "-d", dev).Run() })
		return dev
	}
	dev := loop(32 << 20)
	if err := flash(context.Background(), img, dev, true, "/", nil, io.Discard, io.Discard); err != nil {
		t.Fatalf("flash to %s: %v", dev, err)
	}

	mounted := loop(32 << 20)
	if out, err := exec.Command(sbin("mkfs.ext4"), "-q", mounted).CombinedOutput(); err != nil {
		t.Fatalf("mkfs: %v: %s", err, out)
	}
	mnt := t.TempDir()
	if out, err := exec.Command("mount", mounted, mnt).CombinedOutput(); err != nil {
		t.Skipf("mount: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", mnt).Run() })
	err := flash(context.Background(), img, mounted, true, "/", nil, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "mounted on "+mnt) {
		t.Fatalf("flash to a mounted disk: %v", err)
	}

	// The disk of /: checkTarget only.
	if rootDisk := rootDevice(); rootDisk != "" {
		if _, err := checkTarget(rootDisk, "/"); err == nil {
			t.Fatalf("checkTarget(%s), the disk of /: no error", rootDisk)
		} else {
			t.Logf("%s refused: %v", rootDisk, err)
		}
	}
}

// rootDevice is the disk holding /, or "" when / is not on a disk here.
func rootDevice() string {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 || f[4] != "/" {
			continue
		}
		real, err := filepath.EvalSymlinks("/sys/dev/block/" + f[2])
		if err != nil {
			return ""
		}
		if _, err := os.Stat(filepath.Join(real, "partition")); err == nil {
			real = filepath.Dir(real)
		}
		dev := "/dev/" + filepath.Base(real)
		if _, err := os.Stat(dev); err == nil {
			return dev
		}
	}
	return ""
}
