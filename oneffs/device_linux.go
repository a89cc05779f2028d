package oneffs

import (
	"os"

	"golang.org/x/sys/unix"
)

// exclusiveFlag makes open(2) of a block device fail with EBUSY when the
// device is mounted or opened exclusively by another program.
const exclusiveFlag = os.O_EXCL

// blockSectorSize returns the logical sector size of a block device.
func blockSectorSize(f *os.File) (int, error) {
	return unix.IoctlGetInt(int(f.Fd()), unix.BLKSSZGET)
}
