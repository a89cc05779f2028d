//go:build !linux

package oneffs

import "os"

const exclusiveFlag = 0

func blockSectorSize(*os.File) (int, error) { return DefaultSectorSize, nil }
