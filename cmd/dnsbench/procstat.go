package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// cpuTime is the CPU time a process has used, user and system, of all its
// threads, as /proc/PID/stat counts it (clock ticks).
type cpuTime struct {
	user, system int64 // clock ticks
}

// total returns the time used, with ticks of tick each.
func (c cpuTime) total(tick time.Duration) time.Duration {
	return time.Duration(c.user+c.system) * tick
}

// sub returns the time used between b and c.
func (c cpuTime) sub(b cpuTime) cpuTime {
	return cpuTime{user: c.user - b.user, system: c.system - b.system}
}

// readCPU reads utime and stime of process pid.
func readCPU(pid int) (cpuTime, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return cpuTime{}, fmt.Errorf("cpu time of %d: %w", pid, err)
	}
	return parseStat(data)
}

// parseStat reads utime and stime (fields 14 and 15) of a /proc/PID/stat
// line. The command name (field 2) is in parentheses and may hold spaces
// and parentheses itself, so the fields are counted from its last ')'.
func parseStat(data []byte) (cpuTime, error) {
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return cpuTime{}, fmt.Errorf("stat %q: no command name", data)
	}
	f := strings.Fields(string(data[i+1:]))
	// f[0] is field 3 (state); utime is field 14, stime field 15.
	if len(f) < 13 {
		return cpuTime{}, fmt.Errorf("stat %q: %d fields", data, len(f)+2)
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	s, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return cpuTime{}, fmt.Errorf("stat %q: utime %q, stime %q", data, f[11], f[12])
	}
	return cpuTime{user: u, system: s}, nil
}

// readRSS reads the resident set size of process pid (VmRSS), in bytes.
func readRSS(pid int) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("rss of %d: %w", pid, err)
	}
	return parseRSS(data)
}

// parseRSS reads the VmRSS line of /proc/PID/status ("VmRSS:  1234 kB").
func parseRSS(data []byte) (int64, error) {
	for _, line := range strings.Split(string(data), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || k != "VmRSS" {
			continue
		}
		f := strings.Fields(v)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("status: %q", line)
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("status: %q: %w", line, err)
		}
		return n * 1024, nil
	}
	return 0, fmt.Errorf("status: no VmRSS line")
}

// clockTick is the length of the clock tick of /proc/PID/stat (getconf
// CLK_TCK; 100 per second on Linux when getconf is missing).
func clockTick() time.Duration {
	hz := 100
	if out, err := exec.Command("getconf", "CLK_TCK").Output(); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(out))); err == nil && n > 0 {
			hz = n
		}
	}
	return time.Second / time.Duration(hz)
}

// onlineCPUs is every CPU of the machine as taskset -c names them
// ("0-1"), from /sys; the bench itself runs pinned, so runtime.NumCPU is
// not the machine's.
func onlineCPUs() string {
	data, err := os.ReadFile("/sys/devices/system/cpu/online")
	if s := strings.TrimSpace(string(data)); err == nil && s != "" {
		return s
	}
	return "0-1023"
}
