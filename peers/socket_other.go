//go:build !linux

package peers

import "net"

// forceSocketBuffers is Linux only.
func forceSocketBuffers(*net.UDPConn, int) {}
