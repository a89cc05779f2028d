package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"elit.local/image/gpt"
)

func cmdFlash(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("elit-image flash", flag.ContinueOnError)
	fs.SetOutput(stderr)
	target := fs.String("o", "", "the `disk` to write (/dev/sdX, /dev/mmcblk0, ...), whole, not a partition")
	yes := fs.Bool("y", false, "do not ask for confirmation")
	name := fs.String("i", "", "flash instance `name`'s image (the last one built)")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	var img string
	switch {
	case fs.NArg() == 1 && *name == "":
		img = fs.Arg(0)
	case fs.NArg() == 0 && *name != "":
		in, err := loadInstance(*name)
		if err != nil {
			return err
		}
		img = in.file(imageFile)
	}
	if *target == "" || img == "" {
		fmt.Fprintln(stderr, "usage: elit-image flash -o /dev/sdX [-y] -i NAME | elit.img")
		return errUsage
	}
	return flash(ctx, img, *target, *yes, "/", stdin, stdout, stderr)
}

// flash writes img to the disk target, after checking that the disk is not
// in use (root is "/" but for tests), and reads it back to verify.
func flash(ctx context.Context, img, target string, yes bool, root string, stdin io.Reader, stdout, stderr io.Writer) error {
	in, err := os.Open(img)
	if err != nil {
		return err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return err
	}
	if _, _, err := readImageParts(img); err != nil {
		return fmt.Errorf("not flashing: %w", err)
	}
	size := fi.Size()
	if t, err := gpt.Read(in); err != nil {
		return err
	} else if size < t.DiskSize() {
		return fmt.Errorf("not flashing: %s is truncated: its partition table ends at byte %d, the file at %d", img, t.DiskSize(), size)
	}
	desc, err := checkTarget(target, root)
	if err != nil {
		return fmt.Errorf("not flashing %s: %w", target, err)
	}
	out, err := os.OpenFile(target, os.O_RDWR|unix.O_EXCL, 0)
	if err != nil {
		return fmt.Errorf("%s: %w (in use?)", target, err)
	}
	defer out.Close()
	devSize, err := out.Seek(0, io.SeekEnd)
	if err != nil {
		return err
	}
	if devSize < size {
		return fmt.Errorf("%s holds %d bytes, the image needs %d", target, devSize, size)
	}
	if !yes && !confirm(stdin, stdout, fmt.Sprintf("Write %s (%.1f GB) to %s (%s)? Everything on it is lost.", img, float64(size)/1e9, target, desc)) {
		return errors.New("not confirmed; nothing written")
	}
	if _, err := out.Seek(0, io.SeekStart); err != nil {
		return err
	}
	h := sha256.New()
	pr := &progressReader{r: io.TeeReader(in, h), total: size, w: stderr, label: "writing"}
	if _, err := io.Copy(out, &ctxReader{ctx, pr}); err != nil {
		return fmt.Errorf("writing %s: %w", target, err)
	}
	pr.finish()
	if err := out.Sync(); err != nil {
		return err
	}
	want := h.Sum(nil)
	// Read back from the disk, not from the page cache.
	unix.Fadvise(int(out.Fd()), 0, 0, unix.FADV_DONTNEED)
	unix.IoctlSetInt(int(out.Fd()), unix.BLKFLSBUF, 0)
	h.Reset()
	pr = &progressReader{r: io.NewSectionReader(out, 0, size), total: size, w: stderr, label: "verifying"}
	if _, err := io.Copy(h, &ctxReader{ctx, pr}); err != nil {
		return fmt.Errorf("reading %s back: %w", target, err)
	}
	pr.finish()
	if !bytes.Equal(h.Sum(nil), want) {
		return fmt.Errorf("%s does not read back what was written: the disk is faulty", target)
	}
	fmt.Fprintf(stdout, "%s written and verified (%d bytes)\n", target, size)
	return nil
}

// checkTarget refuses what must not be overwritten: anything but a whole
// disk or a regular file, a disk with a mounted or swapping partition, and
// the disk the running system lives on. It returns a description of the
// disk for the confirmation.
func checkTarget(target, root string) (string, error) {
	fi, err := os.Stat(target)
	if err != nil {
		return "", err
	}
	if fi.Mode().IsRegular() {
		return "a file", nil
	}
	if fi.Mode()&os.ModeDevice == 0 || fi.Mode()&os.ModeCharDevice != 0 {
		return "", errors.New("not a block device")
	}
	st, ok := fi.Sys().(*unix.Stat_t)
	if !ok {
		var s unix.Stat_t
		if err := unix.Stat(target, &s); err != nil {
			return "", err
		}
		st = &s
	}
	sys := filepath.Join(root, "sys/dev/block", fmt.Sprintf("%d:%d", unix.Major(uint64(st.Rdev)), unix.Minor(uint64(st.Rdev))))
	real, err := filepath.EvalSymlinks(sys)
	if err != nil {
		return "", fmt.Errorf("no %s: %w", sys, err)
	}
	if _, err := os.Stat(filepath.Join(real, "partition")); err == nil {
		return "", fmt.Errorf("%s is a partition; give the whole disk", target)
	}
	// The disk and its partitions, by major:minor.
	devs := map[string]bool{readTrim(filepath.Join(real, "dev")): true}
	names := []string{filepath.Base(real)}
	entries, _ := os.ReadDir(real)
	for _, e := range entries {
		if _, err := os.Stat(filepath.Join(real, e.Name(), "partition")); err == nil {
			devs[readTrim(filepath.Join(real, e.Name(), "dev"))] = true
			names = append(names, e.Name())
		}
	}
	// Held by device mapper, RAID or LVM?
	for _, n := range names {
		p := filepath.Join(real, n, "holders")
		if n == filepath.Base(real) {
			p = filepath.Join(real, "holders")
		}
		if hs, _ := os.ReadDir(p); len(hs) > 0 {
			return "", fmt.Errorf("%s is in use by %s (device mapper, RAID or LVM)", n, hs[0].Name())
		}
	}
	mountinfo, err := os.ReadFile(filepath.Join(root, "proc/self/mountinfo"))
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(mountinfo), "\n") {
		f := strings.Fields(line)
		if len(f) >= 5 && devs[f[2]] {
			if f[4] == "/" {
				return "", fmt.Errorf("it holds the running system (mounted on /)")
			}
			return "", fmt.Errorf("it has a file system mounted on %s", f[4])
		}
	}
	swaps, _ := os.ReadFile(filepath.Join(root, "proc/swaps"))
	for _, n := range names {
		if strings.Contains(string(swaps), "/dev/"+n+" ") {
			return "", fmt.Errorf("/dev/%s is in use as swap", n)
		}
	}
	model := readTrim(filepath.Join(real, "device/model"))
	sectors := readTrim(filepath.Join(real, "size"))
	var n int64
	fmt.Sscan(sectors, &n)
	return strings.TrimSpace(fmt.Sprintf("%s %.1f GB", model, float64(n*512)/1e9)), nil
}

// readTrim is a sysfs attribute, "" when there is none.
func readTrim(path string) string {
	s, _ := readTrimmed(path)
	return s
}

// ctxReader stops a copy when ctx ends (Ctrl-C).
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
