package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/x509roots/fallback/bundle"
	"golang.org/x/sys/unix"

	"elit.local/image/fat"
	"elit.local/image/gpt"
)

// A reproducible image: two builds from the same commit, database,
// settings, password and key give the same bytes. monogok stamps its file
// systems with the time of the build and takes the build machine's CA
// certificates, so build finishes its image: every time stamp is the
// source date (the commit's, or SOURCE_DATE_EPOCH), the root file system
// is packed again by mksquashfs in its reproducible mode, with the CA
// certificates pinned in go.mod, and every identifier that would be random
// is derived from the image's own (the GPT's, which gokrazy derives from
// the host name).

// sourceDate is the time every time stamp of the image gets: the
// SOURCE_DATE_EPOCH of the environment, else the commit time of a clean
// checkout of src. Otherwise it is now, and why is returned.
func sourceDate(src string) (t time.Time, notReproducible string) {
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		if n, err := strconv.ParseInt(s, 10, 64); err == nil && n > 0 {
			return time.Unix(n, 0).UTC(), ""
		}
		return time.Now().UTC(), fmt.Sprintf("SOURCE_DATE_EPOCH=%q is not a number of seconds", s)
	}
	out, err := exec.Command("git", "-C", src, "log", "-1", "--format=%ct").Output()
	n, perr := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
	if err != nil || perr != nil {
		return time.Now().UTC(), "the source is not a git checkout (set SOURCE_DATE_EPOCH)"
	}
	dirty, err := exec.Command("git", "-C", src, "status", "--porcelain").Output()
	if err != nil || len(bytes.TrimSpace(dirty)) > 0 {
		return time.Now().UTC(), "the source has uncommitted changes (commit them, or set SOURCE_DATE_EPOCH)"
	}
	return time.Unix(n, 0).UTC(), ""
}

// leaveOut are the root file system paths the appliance never uses:
// kernel modules (gokrazy's init loads only the Raspberry Pi 5's
// pwm-fan.ko, which kernel.rpi builds in, and the appliance runs nothing
// else that loads modules).
var leaveOut = []string{"lib/modules"}

// caBundle is where gokrazy keeps the CA certificates (Go's crypto/x509
// finds them there).
const caBundle = "etc/ssl/ca-bundle.pem"

// repackRoot packs the root file system of img (partition 2) again with
// mksquashfs: leaveOut left out, the key readable by root only, the CA
// certificates those of
// golang.org/x/crypto/x509roots/fallback (pinned in go.mod) rather than
// the build machine's, every time stamp date, owners root, zlib at level
// 9 in 1 MiB blocks with fragments (gokrazy's kernels read zlib only).
// The rest of the partition is zeroed. stamp, monogok's build time stamp,
// is replaced by date in gokrazy's init.
func repackRoot(ctx context.Context, img string, date time.Time, stamp string) (int64, error) {
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	t, err := gpt.Read(f)
	if err != nil {
		return 0, err
	}
	p, err := t.Number(2)
	if err != nil {
		return 0, err
	}
	tmp, err := os.MkdirTemp("", "elit-image-root-")
	if err != nil {
		return 0, err
	}
	defer removeAll(tmp)
	dir, sq, certs := filepath.Join(tmp, "root"), filepath.Join(tmp, "root.squashfs"), filepath.Join(tmp, "ca-bundle.pem")
	if err := os.WriteFile(certs, pinnedCAs(), 0o644); err != nil {
		return 0, err
	}
	if out, err := exec.CommandContext(ctx, "unsquashfs", "-q", "-no-xattrs", "-o", strconv.FormatInt(p.Offset(), 10), "-d", dir, img).CombinedOutput(); err != nil {
		return 0, fmt.Errorf("unsquashfs (Debian package squashfs-tools): %v: %s", err, out)
	}
	if err := replaceIn(filepath.Join(dir, "gokrazy", "init"), stamp, date.Format(time.RFC3339)); err != nil {
		return 0, err
	}
	epoch := strconv.FormatInt(date.Unix(), 10)
	args := []string{dir, sq, "-noappend", "-quiet", "-no-progress", "-no-xattrs", "-reproducible", "-all-root",
		"-mkfs-time", epoch, "-all-time", epoch, "-comp", "gzip", "-Xcompression-level", "9", "-b", "1M",
		"-p", caBundle + " f 444 0 0 cat " + certs,
		// gokrazy's copy of the appliance's key, root's only, as its
		// password file is.
		"-p", "etc/ssl/gokrazy-web.key.pem m 400 0 0",
		"-e", caBundle}
	mk := exec.CommandContext(ctx, "mksquashfs", append(args, leaveOut...)...)
	// mksquashfs refuses SOURCE_DATE_EPOCH next to -all-time.
	mk.Env = slices.DeleteFunc(os.Environ(), func(e string) bool { return strings.HasPrefix(e, "SOURCE_DATE_EPOCH=") })
	if out, err := mk.CombinedOutput(); err != nil {
		return 0, fmt.Errorf("mksquashfs (Debian package squashfs-tools): %v: %s", err, out)
	}
	root, err := os.ReadFile(sq)
	if err != nil {
		return 0, err
	}
	if int64(len(root)) > p.Size() {
		return 0, fmt.Errorf("the root file system (%d bytes) does not fit its partition (%d)", len(root), p.Size())
	}
	if _, err := f.WriteAt(root, p.Offset()); err != nil {
		return 0, err
	}
	// Whatever monogok's larger file system left behind goes.
	if err := unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, p.Offset()+int64(len(root)), p.Size()-int64(len(root))); err != nil {
		if _, err := f.WriteAt(make([]byte, p.Size()-int64(len(root))), p.Offset()+int64(len(root))); err != nil {
			return 0, err
		}
	}
	return int64(len(root)), f.Close()
}

// replaceIn replaces old by new, as long, in file path.
func replaceIn(path, old, new string) error {
	if len(old) != len(new) {
		return fmt.Errorf("%s: cannot replace %q by %q, of another length", path, old, new)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	os.Chmod(path, 0o700)
	if err := os.WriteFile(path, bytes.ReplaceAll(b, []byte(old), []byte(new)), 0o700); err != nil {
		return err
	}
	return os.Chmod(path, fi.Mode().Perm())
}

// pinnedCAs is the CA bundle of golang.org/x/crypto/x509roots/fallback.
func pinnedCAs() []byte {
	var b []byte
	for r := range bundle.Roots() {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: r.Certificate})...)
	}
	return b
}

// removeAll removes a tree unsquashfs made, whose directories may be
// read-only.
func removeAll(dir string) {
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			os.Chmod(p, 0o700)
		}
		return nil
	})
	os.RemoveAll(dir)
}

// stampBoot gives every file of the boot file system (partition 1) the
// time date.
func stampBoot(img string, date time.Time) error {
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	t, err := gpt.Read(f)
	if err != nil {
		return err
	}
	p, err := t.Number(1)
	if err != nil {
		return err
	}
	if _, err := fat.SetTimes(p.Section(f), date); err != nil {
		return fmt.Errorf("boot file system: %w", err)
	}
	return f.Close()
}

// permTLS is where elit keeps the server's TLS key on /perm: the state
// directory's tls (elit/certs: SelfSignedDir/selfsigned.key, made once and
// kept, every certificate's key, ACME's too; the state directory is
// /perm/elit on the appliance). build puts the appliance's key there, so
// that the key elit-image pins is the key elit serves.
const permTLS = "elit/tls"

// formatPerm makes /perm, the ext4 file system of partition perm, with the
// appliance's key and certificate in permTLS: its identifiers derived from
// the disk's, its time stamps date, its files root's. (gokrazy mounts
// partition 4 as /perm but formats nothing in an image file: docs, "Could
// not mount permanent storage partition".)
func formatPerm(img string, t *gpt.Table, perm gpt.Partition, keys *keyPair, date time.Time) error {
	stage, err := os.MkdirTemp("", "elit-image-perm-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(stage)
	files := []struct {
		path string
		data []byte
		mode os.FileMode
	}{{"elit", nil, 0o700}, {permTLS, nil, 0o700}, {permTLS + "/selfsigned.key", keys.keyPEM, 0o600}, {permTLS + "/selfsigned.pem", keys.certPEM, 0o644}}
	for _, f := range files {
		p := filepath.Join(stage, f.path)
		if f.data == nil {
			err = os.Mkdir(p, f.mode)
		} else {
			err = os.WriteFile(p, f.data, f.mode)
		}
		if err != nil {
			return err
		}
	}
	epoch := strconv.FormatInt(date.Unix(), 10)
	fake := "E2FSPROGS_FAKE_TIME=" + epoch
	uuid, seed := t.Derive("perm uuid"), t.Derive("perm hash seed")
	mkfs := exec.Command("mkfs.ext4", "-q", "-F", "-L", "perm", "-U", uuidString(uuid), "-E",
		"hash_seed="+uuidString(seed)+",offset="+strconv.FormatInt(perm.Offset(), 10), "-d", stage,
		img, strconv.FormatInt(perm.Size()/1024, 10)+"k")
	mkfs.Env = append(os.Environ(), fake)
	if out, err := mkfs.CombinedOutput(); err != nil {
		return fmt.Errorf("mkfs.ext4 for /perm (Debian package e2fsprogs): %v: %s", err, out)
	}
	// mkfs.ext4 -d copies the staged files' owners and change times,
	// which the build cannot choose: debugfs sets them.
	var cmds strings.Builder
	paths := []string{"/"}
	for _, f := range files {
		paths = append(paths, "/"+f.path)
	}
	for _, p := range paths {
		for _, field := range []string{"uid 0", "gid 0", "atime @" + epoch, "mtime @" + epoch, "ctime @" + epoch, "crtime @" + epoch} {
			fmt.Fprintf(&cmds, "sif %s %s\n", p, field)
		}
	}
	debugfs := exec.Command("debugfs", "-w", "-f", "-", img+"?offset="+strconv.FormatInt(perm.Offset(), 10))
	debugfs.Env = append(os.Environ(), fake)
	debugfs.Stdin = strings.NewReader(cmds.String())
	out, err := debugfs.CombinedOutput()
	if err != nil || bytes.Contains(out, []byte("sif:")) || bytes.Contains(out, []byte("error")) {
		return fmt.Errorf("debugfs on /perm: %v: %s", err, out)
	}
	return nil
}

// uuidString writes id's bytes as a UUID (in their order, as mkfs.ext4
// reads one).
func uuidString(id gpt.GUID) string {
	h := hex.EncodeToString(id[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// imageDigest is the SHA-256 of the file at path, as sha256sum prints it.
// The holes of a sparse image are hashed as zeros without being read.
func imageDigest(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", err
	}
	h := sha256.New()
	zeros := make([]byte, 1<<20)
	size := fi.Size()
	for off := int64(0); off < size; {
		data, err := unix.Seek(int(f.Fd()), off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			data = size // a hole to the end
		} else if err != nil {
			data = off // no SEEK_DATA: read it all
		}
		for ; off < data; off += int64(len(zeros)) {
			h.Write(zeros[:min(int64(len(zeros)), data-off)])
		}
		off = data
		if off >= size {
			break
		}
		hole, err := unix.Seek(int(f.Fd()), off, unix.SEEK_HOLE)
		if err != nil {
			hole = size
		}
		if _, err := io.Copy(h, io.NewSectionReader(f, off, hole-off)); err != nil {
			return "", err
		}
		off = hole
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// bytesUsed is the size of the squashfs file system at off in f (its
// superblock: magic "hsqs", bytes_used at byte 40), 0 if there is none.
func bytesUsed(f io.ReaderAt, off int64) int64 {
	sb := make([]byte, 48)
	if _, err := f.ReadAt(sb, off); err != nil || string(sb[:4]) != "hsqs" {
		return 0
	}
	return int64(binary.LittleEndian.Uint64(sb[40:]))
}
