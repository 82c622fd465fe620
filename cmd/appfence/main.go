// Command appfence is a DNS resolver that keeps banned apps off a network
// while exempted device groups keep using them.
//
//	appfence serve   [-config FILE]
//	appfence check   [-config FILE] [-json] [-fetch]
//	appfence explain [-config FILE] [-json] -client IP NAME... [TYPE]
//	appfence profile [-config FILE] -client-id ID [-protocol https|tls] [-cert-uuid UUID] [-android]
//	appfence healthcheck [-config FILE] [-url URL] [-dns ADDR] [-timeout D]
//	appfence version
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = ""

const usage = `usage:
  appfence serve   [-config FILE]                        run the resolver (no -config: built-in config)
  appfence check   [-config FILE] [-json] [-fetch]       validate everything, print a summary
  appfence explain [-config FILE] [-json] [-client-id ID] [-cert NAME] -client IP NAME... [TYPE]   the decision for names, no network
  appfence apps    [-config FILE] [-json] [-markdown]     the app catalog: apps, sets, rule counts, sources, review dates
  appfence profile [-config FILE] -client-id ID [-protocol https|tls] [-cert-uuid UUID] [-android]   a device's MDM profile
  appfence healthcheck [-config FILE] [-url URL] [-dns ADDR] [-timeout D]   exit 0 if the instance on loopback answers /readyz and DNS
  appfence version
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run executes a command line and returns the exit code.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "serve":
		return serve(ctx, args[1:], stderr)
	case "check":
		return check(args[1:], stdout, stderr)
	case "explain":
		return explain(args[1:], stdin, stdout, stderr)
	case "apps":
		return apps(args[1:], stdout, stderr)
	case "profile":
		return profile(args[1:], stdout, stderr)
	case "healthcheck":
		return healthcheck(ctx, args[1:], stdout, stderr)
	case "version", "-version", "--version":
		fmt.Fprintf(stdout, "appfence %s %s %s/%s\n", buildVersion(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
		return 0
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "appfence: unknown command %q\n%s", args[0], usage)
	return 2
}

// buildVersion returns the version set at build time, or the module or VCS
// version recorded by the Go toolchain.
func buildVersion() string {
	if version != "" {
		return version
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "dev"
	}
	if v := info.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	for _, s := range info.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			return "dev-" + s.Value[:12]
		}
	}
	return "dev"
}
