package peers

import (
	"fmt"
	"net"
)

// listenUDP opens a UDP socket on addr and sizes its buffers.
func listenUDP(addr *net.UDPAddr, bufSize int) (*net.UDPConn, error) {
	udp, err := net.ListenUDP("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("peers: %w", err)
	}
	if bufSize > 0 {
		setSocketBuffers(udp, bufSize)
	}
	return udp, nil
}

// listenUDPPorts opens n UDP sockets: the first on addr, the others on
// the ports that follow (or ephemeral ports when addr's port is 0).
func listenUDPPorts(addr *net.UDPAddr, n int, bufSize int) ([]*net.UDPConn, error) {
	out := make([]*net.UDPConn, 0, n)
	for i := range n {
		a := *addr
		if a.Port != 0 {
			a.Port += i
		}
		var udp *net.UDPConn
		var err error
		if a.Port > 65535 {
			err = fmt.Errorf("peers: port %d out of range", a.Port)
		} else {
			udp, err = listenUDP(&a, bufSize)
		}
		if err != nil {
			for _, u := range out {
				_ = u.Close()
			}
			return nil, err
		}
		out = append(out, udp)
	}
	return out, nil
}

// setSocketBuffers asks for bufSize bytes of send and receive buffer. The
// kernel caps the plain request at net.core.{r,w}mem_max; with
// CAP_NET_ADMIN the forcing variant (Linux) goes past that. Failure is not
// an error: the socket works, only slower, and quic-go logs a warning once
// if the buffers stay below what it wants.
func setSocketBuffers(udp *net.UDPConn, bufSize int) {
	_ = udp.SetReadBuffer(bufSize)
	_ = udp.SetWriteBuffer(bufSize)
	forceSocketBuffers(udp, bufSize)
}
