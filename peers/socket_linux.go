//go:build linux

package peers

import (
	"net"
	"syscall"
)

// forceSocketBuffers raises the buffers past the sysctl caps when the
// process may (CAP_NET_ADMIN); Linux reports twice the size it was asked
// for, so a buffer already at bufSize or more is left alone.
func forceSocketBuffers(udp *net.UDPConn, bufSize int) {
	rc, err := udp.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) {
		for _, opt := range [][2]int{{syscall.SO_RCVBUF, syscall.SO_RCVBUFFORCE}, {syscall.SO_SNDBUF, syscall.SO_SNDBUFFORCE}} {
			if v, err := syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, opt[0]); err == nil && v >= bufSize {
				continue
			}
			_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, opt[1], bufSize)
		}
	})
}
