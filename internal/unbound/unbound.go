// Package unbound writes the configuration of Unbound as a forwarder on
// loopback, the reference AppFence is measured against by the bench
// (cmd/dnsbench) and the conformance run (cmd/conformance).
package unbound

import (
	"fmt"
	"net"
	"path/filepath"
)

// ForwarderConfig is Unbound with one thread in the foreground, listening
// on addr and forwarding everything to upstream, without validation (no
// trust anchor: a forwarder like AppFence), its files under dir. extra is
// added to the server: clause (local-zone lines, for example). Unbound
// answers names under test. itself (RFC 6761) unless told not to; this
// configuration tells it not to.
func ForwarderConfig(dir, addr, upstream, extra string) string {
	host, port, _ := net.SplitHostPort(addr)
	uhost, uport, _ := net.SplitHostPort(upstream)
	return fmt.Sprintf(`server:
  interface: %s
  port: %s
  num-threads: 1
  do-daemonize: no
  username: ""
  chroot: ""
  directory: %q
  pidfile: %q
  use-syslog: no
  logfile: ""
  verbosity: 0
  do-ip6: no
  access-control: 127.0.0.0/8 allow
  do-not-query-localhost: no
  module-config: "iterator"
  local-zone: "test." nodefault
%sremote-control:
  control-enable: no
forward-zone:
  name: "."
  forward-addr: %s@%s
`, host, port, dir, filepath.Join(dir, "unbound.pid"), extra, uhost, uport)
}
