//go:build !linux

package server

import "syscall"

// workerSysProcAttr leaves attr alone: only Linux has Pdeathsig. The
// worker still ends when its standard input closes.
func workerSysProcAttr(attr *syscall.SysProcAttr) *syscall.SysProcAttr { return attr }
