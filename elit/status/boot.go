package status

import (
	"os"
	"regexp"
	"strings"
)

// Boot is the gokrazy root partition the boot partition names (2 or 3),
// and whether this boot is a trial of the other one
// (gokrazy.try_boot_inactive=1, see elit-image update).
type Boot struct {
	RootPartition int  `json:"root_partition,omitempty"`
	Trial         bool `json:"trial,omitempty"`
}

// trialMarker on the kernel command line is a trial boot of the inactive
// root (gokrazy's init clears it for the next boot).
const trialMarker = "gokrazy.try_boot_inactive=1"

var partnroffRE = regexp.MustCompile(`\broot=PARTUUID=[0-9a-fA-F-]+/PARTNROFF=([12])\b`)

// ReadBoot reads a kernel command line (/proc/cmdline), which stays the
// same for the whole boot: zero when there is none.
func ReadBoot(path string) Boot {
	cmdline, err := os.ReadFile(path)
	if err != nil {
		return Boot{}
	}
	return ParseCmdline(string(cmdline))
}

// ParseCmdline reads a kernel command line.
func ParseCmdline(cmdline string) Boot {
	var b Boot
	if m := partnroffRE.FindStringSubmatch(cmdline); m != nil {
		b.RootPartition = 1 + int(m[1][0]-'0')
	}
	b.Trial = strings.Contains(cmdline, trialMarker)
	return b
}
