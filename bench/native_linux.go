package bench

import "syscall"

// nativeProcAttr makes the native program die with this process, so that
// an interrupted run leaves no program holding the GPUs.
func nativeProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
