//go:build !linux

package peers

import "net"

const reusePortSupported = false

func setReusePort(uintptr) error { return nil }

// forceSocketBuffers is Linux only.
func forceSocketBuffers(*net.UDPConn, int) {}
