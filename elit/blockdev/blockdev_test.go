package blockdev

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// fakeSysfs makes a /sys/class/block tree like the gokrazy VM's (virtio
// disk, the oneffs partition 5, as ../shared/docs/gokrazy.md recorded it)
// plus a second disk. (A real one from losetup --partscan is not possible
// here: this machine's kernel does not scan loop devices' partitions.)
func fakeSysfs(t *testing.T, devs map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for name, uevent := range devs {
		dir := filepath.Join(root, "class", "block", name)
		os.MkdirAll(dir, 0o755)
		os.WriteFile(filepath.Join(dir, "uevent"), []byte(uevent), 0o644)
	}
	return root
}

func TestFind(t *testing.T) {
	sys := fakeSysfs(t, map[string]string{
		"vda":  "MAJOR=254\nMINOR=0\nDEVNAME=vda\nDEVTYPE=disk\n",
		"vda1": "MAJOR=254\nMINOR=1\nDEVNAME=vda1\nDEVTYPE=partition\nPARTN=1\n",
		"vda5": "MAJOR=254\nMINOR=5\nDEVNAME=vda5\nDEVTYPE=partition\nPARTN=5\nPARTNAME=oneffs\nPARTUUID=60C24CC1-F3F9-427A-8199-4049C22C0005\n",
		"vdb1": "MAJOR=254\nMINOR=17\nDEVNAME=vdb1\nDEVTYPE=partition\nPARTN=1\nPARTNAME=data\n",
		"vdb2": "MAJOR=254\nMINOR=18\nDEVNAME=vdb2\nDEVTYPE=partition\nPARTN=2\nPARTNAME=data\n",
	})
	for _, c := range []struct {
		spec, want string
		err        error
	}{
		{"partname:oneffs", "/dev/vda5", nil},
		{"partuuid:60c24cc1-f3f9-427a-8199-4049c22c0005", "/dev/vda5", nil},
		{"partname:missing", "", ErrNotFound},
		{"partname:data", "", nil}, // ambiguous
		{"label:x", "", nil},
		{"partname:", "", nil},
	} {
		got, err := Find(sys, c.spec)
		switch {
		case c.want != "" && (err != nil || got != c.want):
			t.Errorf("%s: %q %v", c.spec, got, err)
		case c.want == "" && err == nil:
			t.Errorf("%s: %q, want an error", c.spec, got)
		case c.err != nil && !errors.Is(err, c.err):
			t.Errorf("%s: %v, want %v", c.spec, err, c.err)
		}
	}
	if !IsSpec("partname:oneffs") || IsSpec("/dev/vda5") {
		t.Error("IsSpec")
	}
}
