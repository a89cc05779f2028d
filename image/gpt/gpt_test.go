package gpt

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"elit.local/oneffs"
)

// gokrazyLike makes a 64 MiB image partitioned like a gokrazy disk (boot,
// root A, root B, perm to the end) with util-linux's sfdisk.
func gokrazyLike(t *testing.T) string {
	t.Helper()
	return partitioned(t, "", "")
}

// partitioned makes it with the disk GUID disk and partition 1's GUID
// boot ("" for random ones).
func partitioned(t *testing.T, disk, boot string) string {
	t.Helper()
	if _, err := exec.LookPath("sfdisk"); err != nil {
		t.Fatal("sfdisk is not installed: make test installs it (apt-get install fdisk)")
	}
	img := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(img, make([]byte, 64<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sfdisk", "--quiet", img)
	var label, uuid string
	if disk != "" {
		label = "label-id: " + disk + "\n"
	}
	if boot != "" {
		uuid = ", uuid=" + boot
	}
	cmd.Stdin = strings.NewReader(`label: gpt
` + label + `size=8MiB, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name=boot` + uuid + `
size=8MiB, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4
size=8MiB, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4
type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=perm
`)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sfdisk: %v\n%s", err, out)
	}
	return img
}

type sfdiskJSON struct {
	PartitionTable struct {
		Partitions []struct {
			Node  string `json:"node"`
			Start uint64 `json:"start"`
			Size  uint64 `json:"size"`
			Type  string `json:"type"`
			Name  string `json:"name"`
		} `json:"partitions"`
	} `json:"partitiontable"`
}

// TestAddAtEnd adds the oneffs partition and has sfdisk judge the result:
// both tables valid, partition 4 shrunk, partition 5 where we said, LBA 0
// untouched.
func TestAddAtEnd(t *testing.T) {
	img := gokrazyLike(t)
	before, _ := os.ReadFile(img)
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	p, err := AddAtEnd(f, "oneffs", 4<<20)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	if p.Index != 5 || p.Size() < 4<<20 || p.Offset()%(1<<20) != 0 {
		t.Errorf("partition %+v", p)
	}
	after, _ := os.ReadFile(img)
	if !bytes.Equal(before[:512], after[:512]) {
		t.Error("LBA 0 changed")
	}
	if out, err := exec.Command("sfdisk", "--verify", img).CombinedOutput(); err != nil || !strings.Contains(string(out), "No errors detected") {
		t.Errorf("sfdisk --verify: %v\n%s", err, out)
	}
	out, err := exec.Command("sfdisk", "--json", img).Output()
	if err != nil {
		t.Fatal(err)
	}
	var js sfdiskJSON
	if err := json.Unmarshal(out, &js); err != nil {
		t.Fatal(err)
	}
	ps := js.PartitionTable.Partitions
	if len(ps) != 5 {
		t.Fatalf("sfdisk sees %d partitions:\n%s", len(ps), out)
	}
	p4, p5 := ps[3], ps[4]
	if p5.Name != "oneffs" || p5.Type != "0FC63DAF-8483-4772-8E79-3D69D8477DE4" || p5.Start != p.First || p5.Size != p.Last-p.First+1 ||
		p4.Start+p4.Size != p5.Start || p4.Name != "perm" {
		t.Errorf("sfdisk says:\n%s", out)
	}
	// Read back, and refuse a second one of the same name.
	f, _ = os.OpenFile(img, os.O_RDWR, 0)
	defer f.Close()
	tab, err := Read(f)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := tab.Find("oneffs"); err != nil || got.First != p.First || got.ID != p.ID {
		t.Errorf("Find: %+v %v", got, err)
	}
	if _, err := AddAtEnd(f, "oneffs", 1<<20); err == nil {
		t.Error("a second partition with the same name")
	}
	if _, err := tab.Find("nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Find(nope): %v", err)
	}
	if _, err := AddAtEnd(f, "huge", 1<<30); !errors.Is(err, ErrNoRoom) {
		t.Errorf("too big: %v", err)
	}
}

// TestNewID: the new partition's GUID is never random. On a disk whose
// partitions gokrazy numbered it continues the numbering; on another it is
// derived from the disk's GUID, so the same disk gets the same one.
func TestNewID(t *testing.T) {
	for _, c := range []struct {
		name, disk, boot, want string
	}{
		{"gokrazy", "60C24CC1-F3F9-427A-8199-4049C22C0000", "60C24CC1-F3F9-427A-8199-4049C22C0001", "60C24CC1-F3F9-427A-8199-4049C22C0005"},
		{"other", "0D1B5F2A-9C3E-4A7B-8E21-5F6A7B8C9D0E", "11111111-2222-4333-8444-555555555555", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			var ids []GUID
			for range 2 {
				img := partitioned(t, c.disk, c.boot)
				f, err := os.OpenFile(img, os.O_RDWR, 0)
				if err != nil {
					t.Fatal(err)
				}
				p, err := AddAtEnd(f, "oneffs", 1<<20)
				f.Close()
				if err != nil {
					t.Fatal(err)
				}
				ids = append(ids, p.ID)
			}
			if ids[0] != ids[1] {
				t.Errorf("two disks alike, two GUIDs: %v %v", ids[0], ids[1])
			}
			if c.want != "" && ids[0].String() != c.want {
				t.Errorf("GUID %v, want %s", ids[0], c.want)
			}
			if c.want == "" && (ids[0].String() == c.boot || ids[0][7]>>4 != 4) {
				t.Errorf("GUID %v", ids[0])
			}
		})
	}
}

func TestReadRefuses(t *testing.T) {
	img := gokrazyLike(t)
	data, _ := os.ReadFile(img)
	for name, mutate := range map[string]func(b []byte){
		"no signature":   func(b []byte) { b[512] = 'X' },
		"header crc":     func(b []byte) { b[512+40]++ },
		"entries crc":    func(b []byte) { b[1024+60]++ },
		"absurd entries": func(b []byte) { b[512+80] = 0xff; b[512+81] = 0xff },
	} {
		b := bytes.Clone(data)
		mutate(b)
		if _, err := Read(bytes.NewReader(b)); !errors.Is(err, ErrNoGPT) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := Read(bytes.NewReader(make([]byte, 4096))); !errors.Is(err, ErrNoGPT) {
		t.Errorf("zeros: %v", err)
	}
}

func FuzzRead(f *testing.F) {
	f.Add(make([]byte, 2048))
	f.Fuzz(func(t *testing.T, b []byte) {
		tab, err := Read(bytes.NewReader(b))
		if err == nil {
			tab.Find("oneffs")
		}
	})
}

// TestDatabaseInPartition writes the demo database into the new partition
// as fail-safe OneFFS, then cuts the partition out and reads it with the
// oneffs CLI.
func TestDatabaseInPartition(t *testing.T) {
	img := gokrazyLike(t)
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p, err := AddAtEnd(f, "oneffs", 2<<20)
	if err != nil {
		t.Fatal(err)
	}
	db, err := os.ReadFile("../../appliance/demo/users.json")
	if err != nil {
		t.Fatal(err)
	}
	im, err := oneffs.New(p.Section(f), p.Size(), oneffs.WithFormat(oneffs.FailSafe))
	if err != nil {
		t.Fatal(err)
	}
	if err := im.Format(); err != nil {
		t.Fatal(err)
	}
	if err := im.Write(db); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Section(f).WriteAt([]byte("x"), p.Size()); !errors.Is(err, ErrOutside) {
		t.Errorf("write past the partition: %v", err)
	}
	// Cut partition 5 out, as dd would, and ask the CLI.
	part := make([]byte, p.Size())
	if _, err := f.ReadAt(part, p.Offset()); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "part5.img"), part, 0o600)
	bin := filepath.Join(dir, "oneffs")
	if out, err := exec.Command("go", "build", "-o", bin, "elit.local/oneffs/cmd/oneffs").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "get", filepath.Join(dir, "part5.img")).Output()
	if err != nil || !bytes.Equal(out, db) {
		t.Errorf("oneffs get: %v\n%s", err, out)
	}
}
