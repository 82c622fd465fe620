package main

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/appfence/appfence/policy"
)

// TestExplainNames: explain prints, for each name, the group, the app, the
// rule, where the rule was written (file:line, also inside imported
// lists) and the action.
func TestExplainNames(t *testing.T) {
	dir := checkTree(t)
	cfg := filepath.Join(dir, "appfence.toml")
	apps := filepath.Join(dir, "apps", "apps.toml")
	hosts := filepath.Join(dir, "lists", "video.hosts")
	adblock := filepath.Join(dir, "lists", "video.adblock")
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"explain", "-config", cfg, "-client", "10.20.30.99",
		"www.video.test", "help.video.test", "a.cdn.video-static.test", "ok.img.video-static.test", "games.test", "www.tiktok.com", "chat.test", "example.org"},
		nil, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	want := [][]string{
		{"NAME", "TYPE", "GROUP", "ACTION", "APP", "RULE", "ORIGIN", "ANSWER"},
		{"www.video.test", "A", "one-phone", "blocked", "video", "video.test", "(domain)", apps + ":3", "NXDOMAIN,"},
		{"help.video.test", "A", "one-phone", "resolved", "video", "help.video.test", "(allow)", apps + ":4", "forwarded"},
		{"a.cdn.video-static.test", "A", "one-phone", "blocked", "video", "cdn.video-static.test", "(domain)", hosts + ":1", "NXDOMAIN,"},
		{"ok.img.video-static.test", "A", "one-phone", "resolved", "video", "ok.img.video-static.test", "(allow)", adblock + ":3", "forwarded"},
		{"games.test", "A", "one-phone", "blocked", "games", "games.test", "(domain)", apps + ":16", "NXDOMAIN,"},
		{"www.tiktok.com", "A", "one-phone", "blocked", "tiktok", "tiktok.com", "(domain)"},
		{"chat.test", "A", "one-phone", "monitored", "chat", "chat.test", "(domain)", apps + ":12", "forwarded"},
		{"example.org", "A", "one-phone", "resolved", "-", "-", "-", "forwarded"},
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	if len(lines) != len(want) {
		t.Fatalf("%d lines, want %d:\n%s", len(lines), len(want), stdout.String())
	}
	for i, w := range want {
		got := strings.Fields(lines[i])
		if len(got) < len(w) || strings.Join(got[:len(w)], " ") != strings.Join(w, " ") {
			t.Errorf("line %d:\n got %q\nwant %q…", i, lines[i], strings.Join(w, " "))
		}
	}
	if !strings.Contains(lines[6], "builtin:tiktok.toml:") {
		t.Errorf("tiktok's origin: %s", lines[6])
	}
}

func TestExplainJSONAndType(t *testing.T) {
	dir := checkTree(t)
	cfg := filepath.Join(dir, "appfence.toml")
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"explain", "-config", cfg, "-client", "10.20.30.5", "-json", "-type", "https"},
		strings.NewReader("www.tiktok.com\n\n# a comment\nWWW.Video.Test.\n"), &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	dec := json.NewDecoder(&stdout)
	var got []policy.Explanation
	for dec.More() {
		var e policy.Explanation
		if err := dec.Decode(&e); err != nil {
			t.Fatal(err)
		}
		got = append(got, e)
	}
	if len(got) != 2 ||
		got[0].Name != "www.tiktok.com" || got[0].Type != "HTTPS" || got[0].Group != "investigators" || got[0].Action != "exempted" || got[0].App != "tiktok" ||
		got[1].Name != "www.video.test" || got[1].Action != "blocked" || got[1].Origin != filepath.Join(dir, "apps", "apps.toml")+":3" || !strings.HasPrefix(got[1].Answer, "NXDOMAIN") {
		t.Errorf("explanations %+v", got)
	}
}

func TestExplainErrors(t *testing.T) {
	dir := checkTree(t)
	cfg := filepath.Join(dir, "appfence.toml")
	tests := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"-client", "10.1.2.300", "x.test"}, 2, `-client "10.1.2.300" is not an IP address`},
		{[]string{"-client", "10.1.2.3", "-type", "BOGUS", "x.test"}, 2, `"BOGUS" is not a DNS type`},
		{[]string{"-config", filepath.Join(dir, "missing.toml"), "-client", "10.1.2.3", "x.test"}, 1, "missing.toml"},
	}
	for _, tt := range tests {
		var stdout, stderr bytes.Buffer
		args := append([]string{"explain", "-config", cfg}, tt.args...)
		if code := run(context.Background(), args, strings.NewReader(""), &stdout, &stderr); code != tt.code || !strings.Contains(stderr.String(), tt.want) {
			t.Errorf("%v: exit %d, stderr %q; want %d and %q", tt.args, code, stderr.String(), tt.code, tt.want)
		}
	}
}
