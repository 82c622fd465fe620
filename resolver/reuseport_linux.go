package resolver

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// reusePortSupported: server.udp_sockets binds several UDP sockets on one
// address.
const reusePortSupported = true

// reusePort sets SO_REUSEPORT on a socket before it is bound, so that
// several sockets share one address and the kernel spreads the clients
// over them (by a hash of the source address and port). Linux lets only
// sockets of the same user join.
func reusePort(_, _ string, c syscall.RawConn) error {
	var serr error
	if err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	}); err != nil {
		return err
	}
	return serr
}
