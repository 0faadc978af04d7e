package peers

import (
	"context"
	"fmt"
	"net"
	"syscall"
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

// listenUDPShared opens n UDP sockets bound to the same address with
// SO_REUSEPORT (n > 1 only where reusePortSupported). With port 0 the
// first socket picks the port and the others join it.
func listenUDPShared(addr *net.UDPAddr, n int, bufSize int) ([]*net.UDPConn, error) {
	if n <= 1 {
		udp, err := listenUDP(addr, bufSize)
		if err != nil {
			return nil, err
		}
		return []*net.UDPConn{udp}, nil
	}
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		if err := rc.Control(func(fd uintptr) { serr = setReusePort(fd) }); err != nil {
			return err
		}
		return serr
	}}
	out := make([]*net.UDPConn, 0, n)
	a := *addr
	for range n {
		pc, err := lc.ListenPacket(context.Background(), "udp", a.String())
		if err != nil {
			for _, u := range out {
				_ = u.Close()
			}
			return nil, err
		}
		udp := pc.(*net.UDPConn)
		if bufSize > 0 {
			setSocketBuffers(udp, bufSize)
		}
		out = append(out, udp)
		a.Port = udp.LocalAddr().(*net.UDPAddr).Port
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
