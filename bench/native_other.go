//go:build !linux

package bench

import "syscall"

// nativeProcAttr: no parent-death signal outside Linux; Close and the
// command timeout stop the program.
func nativeProcAttr() *syscall.SysProcAttr { return nil }
