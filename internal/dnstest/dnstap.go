package dnstest

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	dnstap "github.com/dnstap/golang-dnstap"
	"google.golang.org/protobuf/proto"
)

// Collector is a real dnstap receiver run as a process: Debian's
// fstrm_capture (package fstrm-bin) or the golang-dnstap command, on a
// Unix socket or a loopback TCP port, writing what it receives to File.
type Collector struct {
	// Target is the socket in the form of [log] dnstap: "unix:/path" or
	// "tcp:127.0.0.1:port".
	Target string
	// File is where the collector writes: Frame Streams for
	// fstrm_capture, JSON lines for the golang-dnstap command.
	File string

	network, addr string
	cmd           *exec.Cmd
	stderr        bytes.Buffer
	stopOnce      sync.Once
}

// StartFstrmCapture starts fstrm_capture in dir, on a Unix socket, or on a
// free loopback TCP port when tcp is set, and waits until it accepts
// connections. The test is skipped when fstrm_capture is not installed
// (scripts/test-deps.sh installs it).
func StartFstrmCapture(t testing.TB, dir string, tcp bool) *Collector {
	t.Helper()
	bin, err := exec.LookPath("fstrm_capture")
	if err != nil {
		t.Skip("fstrm_capture not installed (Debian package fstrm-bin; scripts/test-deps.sh installs it)")
	}
	c := newCollector(t, dir, tcp, "capture.fstrm")
	args := []string{"-t", "protobuf:dnstap.Dnstap", "-w", c.File}
	if tcp {
		host, port, _ := net.SplitHostPort(c.addr)
		args = append(args, "-a", host, "-p", port)
	} else {
		args = append(args, "-u", c.addr)
	}
	c.start(t, bin, args...)
	return c
}

// StartGolangDnstap builds the golang-dnstap command (the module's
// dnstap/ directory, in the module cache) into dir and starts it on a Unix
// socket, or a free loopback TCP port when tcp is set, writing JSON lines
// to File.
func StartGolangDnstap(t testing.TB, dir string, tcp bool) *Collector {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("the go command is not in PATH: cannot build the golang-dnstap command")
	}
	bin := filepath.Join(dir, "dnstap")
	if out, err := exec.Command(gobin, "build", "-o", bin, "github.com/dnstap/golang-dnstap/dnstap").CombinedOutput(); err != nil {
		t.Fatalf("build the golang-dnstap command: %v\n%s", err, out)
	}
	c := newCollector(t, dir, tcp, "dnstap.json")
	args := []string{"-j", "-w", c.File}
	if tcp {
		args = append(args, "-l", c.addr)
	} else {
		args = append(args, "-u", c.addr)
	}
	c.start(t, bin, args...)
	return c
}

func newCollector(t testing.TB, dir string, tcp bool, file string) *Collector {
	c := &Collector{File: filepath.Join(dir, file)}
	if tcp {
		c.network, c.addr = "tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(freeTCPPort(t)))
	} else {
		c.network, c.addr = "unix", filepath.Join(dir, "dnstap.sock")
	}
	c.Target = c.network + ":" + c.addr
	return c
}

// start runs bin and waits until it listens.
func (c *Collector) start(t testing.TB, bin string, args ...string) {
	t.Helper()
	c.cmd = exec.Command(bin, args...)
	c.cmd.Stderr = &c.stderr
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	t.Cleanup(c.Stop)
	deadline := time.Now().Add(10 * time.Second)
	for {
		// A connection without a handshake is dropped by the collector and
		// writes nothing.
		if conn, err := net.DialTimeout(c.network, c.addr, time.Second); err == nil {
			conn.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s does not listen on %s: %s", bin, c.Target, c.stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Stop ends the collector with SIGINT, on which it finishes its file, and
// waits for it; it may be called more than once.
func (c *Collector) Stop() {
	c.stopOnce.Do(func() {
		c.cmd.Process.Signal(syscall.SIGCONT) // in case it is paused
		c.cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { c.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			c.cmd.Process.Kill()
			<-done
		}
	})
}

// Pause stops the collector with SIGSTOP: it keeps its connections and
// reads nothing, a stalled collector. Resume continues it.
func (c *Collector) Pause(t testing.TB) {
	t.Helper()
	if err := c.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
}

// Resume continues a paused collector.
func (c *Collector) Resume(t testing.TB) {
	t.Helper()
	if err := c.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
}

// ReadDnstapFile decodes a Frame Streams file of dnstap messages (what
// fstrm_capture writes) with golang-dnstap's reader.
func ReadDnstapFile(t testing.TB, path string) []*dnstap.Dnstap {
	t.Helper()
	in, err := dnstap.NewFrameStreamInputFromFilename(path)
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	ch := make(chan []byte, 64)
	go func() { in.ReadInto(ch); close(ch) }()
	var out []*dnstap.Dnstap
	for frame := range ch {
		m := new(dnstap.Dnstap)
		if err := proto.Unmarshal(frame, m); err != nil {
			t.Fatalf("%s: frame: %v", path, err)
		}
		out = append(out, m)
	}
	return out
}

// DnstapRead decodes a Frame Streams file of dnstap messages with BIND's
// dnstap-read -y (Debian package bind9-dnsutils) and returns its YAML. The
// test is skipped when dnstap-read is not installed.
func DnstapRead(t testing.TB, path string) string {
	t.Helper()
	bin, err := exec.LookPath("dnstap-read")
	if err != nil {
		t.Skip("dnstap-read not installed (Debian package bind9-dnsutils; scripts/test-deps.sh installs it)")
	}
	out, err := exec.Command(bin, "-y", path).CombinedOutput()
	if err != nil {
		t.Fatalf("dnstap-read -y %s: %v\n%s", path, err, out)
	}
	return string(out)
}

// StalledCollector is a Unix socket that accepts connections and never
// reads from them: a collector that hangs.
type StalledCollector struct {
	// Target is the socket in the form of [log] dnstap.
	Target string
	// Accepted counts the connections accepted.
	Accepted func() int
}

// NewStalledCollector listens on a Unix socket in dir; its connections are
// held open, unread, until the test ends.
func NewStalledCollector(t testing.TB, dir string) *StalledCollector {
	t.Helper()
	path := filepath.Join(dir, "stalled.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, conn)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return &StalledCollector{Target: "unix:" + path, Accepted: func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(conns)
	}}
}

// freeTCPPort returns a loopback TCP port that was free a moment ago.
func freeTCPPort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
