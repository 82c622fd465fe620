package deploy

import (
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/appfence/appfence/config"
)

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	cmd, args string
}

// parseDockerfile splits a Dockerfile into instructions.
func parseDockerfile(t *testing.T, path string) []instruction {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []instruction
	var cur strings.Builder
	for _, line := range strings.Split(string(data), "\n") {
		trimmed := strings.TrimSpace(line)
		if cur.Len() == 0 && (trimmed == "" || strings.HasPrefix(trimmed, "#")) {
			continue
		}
		if strings.HasSuffix(trimmed, "\\") {
			cur.WriteString(strings.TrimSuffix(trimmed, "\\") + " ")
			continue
		}
		cur.WriteString(trimmed)
		cmd, args, _ := strings.Cut(cur.String(), " ")
		out = append(out, instruction{strings.ToUpper(cmd), strings.TrimSpace(args)})
		cur.Reset()
	}
	return out
}

// TestDockerfile lints the Dockerfile at the repository root (no Docker
// daemon needed): a build stage on the Go toolchain image of go.mod's
// version, a static binary, a final stage FROM scratch or distroless run
// as a numeric non-root user, a HEALTHCHECK with `appfence healthcheck`,
// the ports of the image's configuration exposed, and the files it copies
// present.
func TestDockerfile(t *testing.T) {
	ins := parseDockerfile(t, "../Dockerfile")
	gomod, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	goVersion := regexp.MustCompile(`(?m)^go (\S+)$`).FindSubmatch(gomod)
	var froms []string
	var final []instruction // the instructions of the last stage
	args := map[string]string{}
	for _, in := range ins {
		switch in.cmd {
		case "ARG":
			if k, v, ok := strings.Cut(in.args, "="); ok {
				args[k] = v
			}
		case "FROM":
			froms = append(froms, in.args)
			final = nil
			continue
		}
		final = append(final, in)
	}
	if len(froms) < 2 {
		t.Fatalf("FROM %q: want a build stage and a final stage", froms)
	}
	if goVersion == nil || args["GO_VERSION"] != string(goVersion[1]) || !strings.HasPrefix(froms[0], "golang:${GO_VERSION} ") {
		t.Errorf("build stage FROM %q with GO_VERSION %q: want golang at go.mod's %s", froms[0], args["GO_VERSION"], goVersion)
	}
	if last := froms[len(froms)-1]; last != "scratch" && !strings.HasPrefix(last, "gcr.io/distroless/static") {
		t.Errorf("final stage FROM %q: want scratch or distroless/static", last)
	}
	var build, user, health, entry string
	var exposed, copies []string
	for _, in := range ins {
		switch in.cmd {
		case "RUN":
			if strings.Contains(in.args, "go build") {
				build = in.args
			}
		case "COPY":
			if !strings.Contains(in.args, "--from=") {
				f := strings.Fields(in.args)
				copies = append(copies, f[:len(f)-1]...)
			}
		}
	}
	for _, in := range final {
		switch in.cmd {
		case "USER":
			user = in.args
		case "HEALTHCHECK":
			health = in.args
		case "ENTRYPOINT":
			entry = in.args
		case "EXPOSE":
			exposed = append(exposed, strings.Fields(in.args)...)
		}
	}
	if !strings.Contains(build, "CGO_ENABLED=0") || !strings.Contains(build, "./cmd/appfence") {
		t.Errorf("build %q: want a static (CGO_ENABLED=0) build of ./cmd/appfence", build)
	}
	uid, _, _ := strings.Cut(user, ":")
	if n, err := strconv.Atoi(uid); err != nil || n == 0 {
		t.Errorf("USER %q: want a numeric user other than root (scratch has no /etc/passwd)", user)
	}
	if !strings.Contains(health, `CMD ["/appfence", "healthcheck"`) {
		t.Errorf("HEALTHCHECK %q: want the exec form of /appfence healthcheck", health)
	}
	if entry != `["/appfence"]` {
		t.Errorf("ENTRYPOINT %q", entry)
	}
	for _, src := range copies {
		if _, err := os.Stat("../" + src); err != nil {
			t.Errorf("COPY %s: %v", src, err)
		}
	}
	cfg, err := config.Parse("appfence.toml", mustRead(t, "docker/appfence.toml"), t.TempDir())
	if err != nil {
		t.Fatalf("docker/appfence.toml: %v", err)
	}
	port := func(addr string) string { return addr[strings.LastIndex(addr, ":")+1:] }
	for _, want := range []string{port(cfg.Server.Listen[0]) + "/udp", port(cfg.Server.Listen[0]) + "/tcp", port(cfg.Metrics.Listen) + "/tcp"} {
		if !slices.Contains(exposed, want) {
			t.Errorf("EXPOSE %q lacks %s, where the image's config listens", exposed, want)
		}
	}
	if !strings.HasPrefix(cfg.Server.Listen[0], ":") {
		t.Errorf("the image listens on %q: loopback is unreachable from outside a container", cfg.Server.Listen[0])
	}
	if !slices.ContainsFunc(final, func(in instruction) bool {
		return in.cmd == "COPY" && strings.Contains(in.args, "--chown="+user) && strings.HasSuffix(in.args, " "+cfg.Blocking.CacheDir)
	}) {
		t.Errorf("blocking.cache_dir %q is not a folder of the image owned by %s", cfg.Blocking.CacheDir, user)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}
