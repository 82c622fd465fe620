package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/appfence/appfence/internal/dnstest"
)

// writeTree writes files (path relative to a new directory -> content) and
// returns the directory.
func writeTree(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, text := range files {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// runCheck runs `appfence check` on dir/appfence.toml with args.
func runCheck(t *testing.T, dir string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), append([]string{"check", "-config", filepath.Join(dir, "appfence.toml")}, args...), nil, &out, &errb)
	return code, out.String(), errb.String()
}

const checkConfig = `[upstream]
servers = ["127.0.0.1:53"]

[blocking]
lists = ["apps/*.toml"]
block = ["tiktok", "video"]
monitor = ["chat"]

[[group]]
name = "investigators"
clients = ["10.20.30.0/24", "fd00:20:30::/64"]
allow = ["tiktok"]

[[group]]
name = "one-phone"
clients = ["10.20.30.99"]
block = ["games"]

[[group]]
name = "press"
clients = ["10.40.0.0/16"]
allow = ["video"]
`

const checkApps = `[[app]]
name = "video"
domains = ["video.test", "shared.test"]
allow = ["help.video.test", "typo.vidoe.test"]
sources = [
  { file = "../lists/video.hosts", format = "hosts" },
  { file = "../lists/video.adblock", format = "adblock" },
]

[[app]]
name = "chat"
domains = ["chat.test", "shared.test"]

[[app]]
name = "games"
domains = ["games.test"]

[[app]]
name = "forgotten"
domains = ["forgotten.test"]
`

func checkTree(t *testing.T) string {
	return writeTree(t, map[string]string{
		"appfence.toml":       checkConfig,
		"apps/apps.toml":      checkApps,
		"lists/video.hosts":   "0.0.0.0 cdn.video-static.test\nnot-an-address x.test\n",
		"lists/video.adblock": "||img.video-static.test^\n||ads.test^$third-party\n@@||ok.img.video-static.test^\n",
	})
}

func TestCheckReport(t *testing.T) {
	dir := checkTree(t)
	code, out, stderr := runCheck(t, dir)
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out, stderr)
	}
	apps := filepath.Join(dir, "apps", "apps.toml")
	for _, want := range []string{
		"appfence.toml: OK",
		"investigators  blocklist  10.20.30.0/24, fd00:20:30::/64",
		// warnings, each with file:line
		filepath.Join(dir, "lists", "video.hosts") + `:2: "not-an-address" is not an IP address [list]`,
		filepath.Join(dir, "lists", "video.adblock") + `:2: modifier $third-party is not supported [list]`,
		apps + `:18: app "forgotten" is defined but blocking.block, blocking.monitor and the groups never name it: its names resolve for every client [unused-app]`,
		apps + `:12: rule "shared.test" of app "chat" is also a rule of app "video" (` + apps + `:3), which keeps it [conflict]`,
		apps + `:4: allow rule "typo.vidoe.test" of app "video" lets nothing through: no block rule of any app matches it or a name above it [idle-allow]`,
		filepath.Join(dir, "appfence.toml") + `:14: every client of group "one-phone" is inside group "investigators": the longest prefix wins, so "one-phone" takes these clients from it [nested-group]`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("check output lacks %q", want)
		}
	}
	for _, unwanted := range []string{`"help.video.test" of app`, `"ok.img.video-static.test" of app`, `group "investigators" is inside`, `group "press" is inside`, `app "tiktok" is defined but`} {
		if strings.Contains(out, unwanted) {
			t.Errorf("check output has %q", unwanted)
		}
	}
	// tables: the first field names the row
	for _, want := range [][]string{
		{"video", "7", apps + ":1"},
		{filepath.Join(dir, "lists", "video.hosts"), "video", "hosts", "1", "1", "0", "-"},
		{filepath.Join(dir, "lists", "video.adblock"), "video", "adblock", "2", "0", "1", "-"},
		{"builtin:tiktok-blocklistproject.hosts", "tiktok", "hosts", "1007", "0", "0", "-"},
		{"GROUP", "\\", "APP", "tiktok", "video", "chat", "games", "forgotten"},
		{"default", "blocked", "blocked", "monitored", "-", "-"},
		{"investigators", "exempted", "blocked", "monitored", "-", "-"},
		{"one-phone", "blocked", "blocked", "monitored", "blocked", "-"},
		{"press", "blocked", "exempted", "monitored", "-", "-"},
	} {
		if got := row(out, want[0], len(want)); !slices.Equal(got, want) {
			t.Errorf("row %v, want %v", got, want)
		}
	}
	if t.Failed() {
		t.Log(out)
	}
}

// row returns the fields of the last line of a table whose first field is
// key and that has n fields.
func row(out, key string, n int) []string {
	var found []string
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) == n && f[0] == key {
			found = f
		}
	}
	return found
}

func TestCheckJSON(t *testing.T) {
	dir := checkTree(t)
	code, out, _ := runCheck(t, dir, "-json")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, out)
	}
	var rep checkReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	if !rep.Valid || rep.Matrix["press"]["video"] != "exempted" || rep.Matrix["default"]["chat"] != "monitored" || len(rep.Groups) != 4 {
		t.Errorf("report %+v", rep)
	}
	kinds := map[string]int{}
	for _, w := range rep.Warnings {
		kinds[w.Kind]++
	}
	want := map[string]int{"list": 2, "unused-app": 1, "conflict": 1, "idle-allow": 1, "nested-group": 1}
	for k, n := range want {
		if kinds[k] != n {
			t.Errorf("%d warnings of kind %s, want %d: %+v", kinds[k], k, n, rep.Warnings)
		}
	}

	// invalid: exit 1, every error with file:line, still JSON
	os.WriteFile(filepath.Join(dir, "apps", "apps.toml"), []byte("[[app]]\nname = \"video\"\ndomains = [\"bad..test\"]\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "appfence.toml"), []byte(strings.Replace(checkConfig, `servers = ["127.0.0.1:53"]`, `servers = ["127.0.0.1:53"]`+"\nstrategy = \"random\"", 1)), 0o644)
	code, out, _ = runCheck(t, dir, "-json")
	rep = checkReport{}
	if err := json.Unmarshal([]byte(out), &rep); err != nil || code != 1 || rep.Valid {
		t.Fatalf("exit %d, %v: %s", code, err, out)
	}
	if len(rep.Errors) != 1 || !strings.HasPrefix(rep.Errors[0], filepath.Join(dir, "appfence.toml")+":3: upstream.strategy") {
		t.Errorf("errors %q", rep.Errors)
	}
	// the config fixed, the app file is next
	os.WriteFile(filepath.Join(dir, "appfence.toml"), []byte(checkConfig), 0o644)
	code, out, stderr := runCheck(t, dir)
	if code != 1 || !strings.Contains(stderr, filepath.Join(dir, "apps", "apps.toml")+`:3: app[0].domains[0]: "bad..test"`) || !strings.Contains(out, "INVALID") {
		t.Errorf("exit %d\n%s%s", code, out, stderr)
	}
}

// TestCheckRemoteSources: check reads the cached copy without network; with
// -fetch it downloads first.
func TestCheckRemoteSources(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "||remote.test^")
	}))
	defer srv.Close()
	dir := writeTree(t, map[string]string{
		"appfence.toml":  "[upstream]\nservers = [\"127.0.0.1:53\"]\n[blocking]\nlists = [\"apps/*.toml\"]\nblock = [\"remote\"]\n",
		"apps/apps.toml": fmt.Sprintf("[[app]]\nname = \"remote\"\nsources = [{ url = %q, format = \"adblock\" }]\n", srv.URL),
	})
	code, out, _ := runCheck(t, dir)
	if code != 0 || !strings.Contains(out, "none: not downloaded yet") || !strings.Contains(out, "not loaded: not downloaded yet") {
		t.Errorf("before any download: exit %d\n%s", code, out)
	}
	code, out, stderr := runCheck(t, dir, "-fetch")
	if got := row(out, srv.URL, 8); code != 0 || len(got) != 8 || got[3] != "1" || got[6] != "downloaded" {
		t.Errorf("-fetch: exit %d\n%s%s", code, out, stderr)
	}
	srv.Close()
	code, out, _ = runCheck(t, dir)
	if got := row(out, srv.URL, 8); code != 0 || len(got) != 8 || got[3] != "1" {
		t.Errorf("from the cache: exit %d\n%s", code, out)
	}
}

// TestCheckQueryLogAndDnstap: a query log that cannot be opened and a
// dnstap socket without a collector are warnings, not errors (serve runs
// without them); a collector that answers is no warning.
func TestCheckQueryLogAndDnstap(t *testing.T) {
	dir := writeTree(t, map[string]string{"appfence.toml": "[upstream]\nservers = [\"127.0.0.1:53\"]\n"})
	collector := dnstest.StartFstrmCapture(t, dir, false)
	write := func(dnstap string) {
		text := fmt.Sprintf("[upstream]\nservers = [\"127.0.0.1:53\"]\n\n[log]\nquery_log = %q\ndnstap = %q\n",
			filepath.Join(dir, "missing", "query.log"), dnstap)
		if err := os.WriteFile(filepath.Join(dir, "appfence.toml"), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, tt := range []struct {
		dnstap string
		want   map[string]int
	}{
		{collector.Target, map[string]int{"query-log": 1}},
		{"unix:" + filepath.Join(dir, "nobody.sock"), map[string]int{"query-log": 1, "dnstap": 1}},
	} {
		write(tt.dnstap)
		code, out, _ := runCheck(t, dir, "-json")
		var rep checkReport
		if err := json.Unmarshal([]byte(out), &rep); err != nil || code != 0 || !rep.Valid {
			t.Fatalf("exit %d, %v: %s", code, err, out)
		}
		kinds := map[string]int{}
		for _, w := range rep.Warnings {
			kinds[w.Kind]++
		}
		if !maps.Equal(kinds, tt.want) {
			t.Errorf("dnstap %s: warnings %+v, want kinds %v", tt.dnstap, rep.Warnings, tt.want)
		}
	}
}
