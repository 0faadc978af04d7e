//go:build !linux

package jaegertest

import "syscall"

// sysProcAttr has nothing to add where there is no parent-death signal;
// the test's cleanup stops Jaeger.
func sysProcAttr() *syscall.SysProcAttr { return nil }
