package server

import "syscall"

// workerSysProcAttr adds Pdeathsig SIGKILL to attr: the kernel kills the
// worker when the thread that started it exits. A Go thread can exit
// while the supervisor lives on, so the worker also ends when its
// standard input closes (see ExecLauncher).
func workerSysProcAttr(attr *syscall.SysProcAttr) *syscall.SysProcAttr {
	if attr == nil {
		attr = &syscall.SysProcAttr{}
	}
	attr.Pdeathsig = syscall.SIGKILL
	return attr
}
