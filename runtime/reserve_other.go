//go:build !linux

package runtime

import "errors"

func mapReserve(lo, size uint64) error {
	return errors.New("reserving address ranges is implemented on Linux only")
}

func mapRelease(lo, size uint64) {}
