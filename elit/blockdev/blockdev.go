// Package blockdev finds block devices the way a system without udev can
// (gokrazy has none, so no /dev/disk/by-*): by reading the uevent files
// under /sys/class/block, which name each partition's GPT name (PARTNAME)
// and unique GUID (PARTUUID, in newer kernels' uevent as PARTUUID= too).
package blockdev

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// ErrNotFound means no partition matches.
var ErrNotFound = errors.New("no such partition")

// IsSpec reports whether s names a partition ("partname:NAME" or
// "partuuid:UUID") rather than a path.
func IsSpec(s string) bool {
	return strings.HasPrefix(s, "partname:") || strings.HasPrefix(s, "partuuid:")
}

// Find returns the device path (/dev/NAME) of the partition spec names,
// looking under sysfs (normally "/sys"). A name that several partitions
// have is an error: writing to the wrong one would destroy data.
func Find(sysfs, spec string) (string, error) {
	key, want, ok := strings.Cut(spec, ":")
	if !ok || want == "" {
		return "", fmt.Errorf("partition %q: want partname:NAME or partuuid:UUID", spec)
	}
	field := map[string]string{"partname": "PARTNAME", "partuuid": "PARTUUID"}[key]
	if field == "" {
		return "", fmt.Errorf("partition %q: want partname:NAME or partuuid:UUID", spec)
	}
	entries, err := filepath.Glob(filepath.Join(sysfs, "class", "block", "*", "uevent"))
	if err != nil {
		return "", err
	}
	sort.Strings(entries)
	var found []string
	for _, path := range entries {
		ev, err := readUevent(path)
		if err != nil || ev["DEVTYPE"] != "partition" {
			continue
		}
		v := ev[field]
		if field == "PARTUUID" {
			v = strings.ToLower(v)
			want = strings.ToLower(want)
		}
		if v == want && ev["DEVNAME"] != "" {
			found = append(found, "/dev/"+ev["DEVNAME"])
		}
	}
	switch len(found) {
	case 0:
		return "", fmt.Errorf("partition %s: %w", spec, ErrNotFound)
	case 1:
		return found[0], nil
	}
	return "", fmt.Errorf("partition %s: several match (%s); name the device instead", spec, strings.Join(found, ", "))
}

func readUevent(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	ev := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			ev[k] = v
		}
	}
	return ev, sc.Err()
}
