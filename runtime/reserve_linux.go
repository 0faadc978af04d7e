package runtime

import (
	"errors"
	"fmt"
	"syscall"
)

// mapFixedNoReplace is Linux's MAP_FIXED_NOREPLACE (4.17+): map exactly at
// the address, or fail with EEXIST if anything is mapped there.
const mapFixedNoReplace = 0x100000

// mapReserve maps [lo, lo+size) with no access and no memory behind it.
func mapReserve(lo, size uint64) error {
	addr, _, errno := syscall.Syscall6(syscall.SYS_MMAP, uintptr(lo), uintptr(size), syscall.PROT_NONE,
		syscall.MAP_PRIVATE|syscall.MAP_ANONYMOUS|syscall.MAP_NORESERVE|mapFixedNoReplace, ^uintptr(0), 0)
	if errno != 0 {
		return fmt.Errorf("mmap %#x+%#x: %w", lo, size, errno)
	}
	if uint64(addr) != lo {
		// A kernel without MAP_FIXED_NOREPLACE took the address as a hint.
		_, _, _ = syscall.Syscall(syscall.SYS_MUNMAP, addr, uintptr(size), 0)
		return errors.New("mmap: the kernel did not map at the window's address")
	}
	return nil
}

// mapRelease unmaps a range mapReserve mapped.
func mapRelease(lo, size uint64) {
	_, _, _ = syscall.Syscall(syscall.SYS_MUNMAP, uintptr(lo), uintptr(size), 0)
}
