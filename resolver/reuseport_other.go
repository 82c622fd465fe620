//go:build !linux

package resolver

import (
	"errors"
	"syscall"
)

// reusePortSupported: elsewhere than on Linux, each listen address has one
// UDP socket, read by GOMAXPROCS goroutines.
const reusePortSupported = false

func reusePort(_, _ string, _ syscall.RawConn) error {
	return errors.New("SO_REUSEPORT sockets are supported on Linux only")
}
