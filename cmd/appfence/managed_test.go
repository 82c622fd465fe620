package main

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
)

const managedConfig = `[upstream]
servers = ["127.0.0.1:53"]

[blocking]
lists = []
block = ["bytedance"]

[[group]]
name = "managed"
clients = ["10.40.0.0/16"]
client_ids = ["phone-17"]
client_certs = ["laptop-3.devices.example"]
mode = "allowlist"
allow = ["essentials-apple", "deepseek"]

[metrics]
listen = ""
`

// TestExplainManagedDevice explains names for devices that only a ClientID
// or a certificate name places in an allowlist group: approved names
// resolve, others are "not approved"; the same address without the
// identity stays in the default group, where bytedance (a set) is blocked.
func TestExplainManagedDevice(t *testing.T) {
	dir := writeTree(t, map[string]string{"appfence.toml": managedConfig})
	cfg := filepath.Join(dir, "appfence.toml")
	explainJSON := func(args ...string) map[string]string {
		t.Helper()
		var out, errb bytes.Buffer
		if code := run(context.Background(), append([]string{"explain", "-config", cfg, "-json", "-client", "10.99.0.7"}, args...), nil, &out, &errb); code != 0 {
			t.Fatalf("explain %v: exit %d: %s", args, code, errb.String())
		}
		var e map[string]string
		if err := json.Unmarshal(out.Bytes(), &e); err != nil {
			t.Fatal(err)
		}
		return e
	}
	for _, tc := range []struct {
		args               []string
		group, action, app string
		answerHas          string
	}{
		{[]string{"-client-id", "phone-17", "push.apple.com"}, "managed", "resolved", "essentials-apple", "forwarded"},
		{[]string{"-client-id", "PHONE-17", "chat.deepseek.com"}, "managed", "resolved", "deepseek", "forwarded"},
		{[]string{"-client-id", "phone-17", "www.example.com"}, "managed", "blocked", "unapproved", "not approved: group=managed"},
		{[]string{"-cert", "laptop-3.devices.example", "tiktok.com"}, "managed", "blocked", "unapproved", "not approved: group=managed"},
		{[]string{"-cert", "laptop-3.devices.example", "mesu.apple.com"}, "managed", "resolved", "essentials-apple", "forwarded"},
		{[]string{"capcut.com"}, "default", "blocked", "capcut", "NXDOMAIN"},
		{[]string{"-client-id", "unknown-phone", "www.example.com"}, "default", "resolved", "", "forwarded"},
	} {
		e := explainJSON(tc.args...)
		if e["group"] != tc.group || e["action"] != tc.action || e["app"] != tc.app || !strings.Contains(e["answer"], tc.answerHas) {
			t.Errorf("explain %v = %v, want group %s, action %s, app %q, answer with %q", tc.args, e, tc.group, tc.action, tc.app, tc.answerHas)
		}
	}
}

// TestCheckManagedGroup: check prints the allowlist group's approved apps,
// warns for the platforms whose essentials it lacks, and places a device
// given by -client-id or -cert.
func TestCheckManagedGroup(t *testing.T) {
	dir := writeTree(t, map[string]string{"appfence.toml": managedConfig})
	code, out, stderr := runCheck(t, dir, "-cert", "laptop-3.devices.example")
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out, stderr)
	}
	for _, want := range []string{
		"managed  allowlist  10.40.0.0/16",
		"group managed approves only: deepseek, essentials-apple",
		`group "managed" (allowlist) does not allow "essentials-google": google devices in it may lose push, management and updates [allowlist]`,
		`group "managed" (allowlist) does not allow "essentials-microsoft"`,
		"device (client=- client-id=- cert=laptop-3.devices.example) is in group managed",
		"GROUP \\ APP  capcut     deepseek  essentials-apple  helo",
		"managed      (blocked)  approved  approved          (blocked)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("check output lacks %q", want)
		}
	}
	if strings.Contains(out, `does not allow "essentials-apple"`) {
		t.Error("check warns about essentials-apple, which the group allows")
	}
	if t.Failed() {
		t.Log(out)
	}
	code, out, _ = runCheck(t, dir, "-json", "-client-id", "phone-17")
	var rep checkReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil || code != 0 {
		t.Fatalf("exit %d, %v:\n%s", code, err, out)
	}
	if rep.Device == nil || rep.Device.Group != "managed" {
		t.Errorf("device = %+v, want group managed", rep.Device)
	}
	for _, g := range rep.Groups {
		if g.Name == "managed" && (g.Mode != "allowlist" || strings.Join(g.Approved, ",") != "deepseek,essentials-apple") {
			t.Errorf("group managed: mode %q approved %v", g.Mode, g.Approved)
		}
	}
}

// TestCheckSetNamesApps: an app of the administrator's own files named only
// through its set is not reported as unused.
func TestCheckSetNamesApps(t *testing.T) {
	dir := writeTree(t, map[string]string{
		"appfence.toml": "[upstream]\nservers = [\"127.0.0.1:53\"]\n[blocking]\nlists = [\"apps/*.toml\"]\nblock = [\"agency-banned\"]\n[metrics]\nlisten = \"\"\n",
		"apps/a.toml":   "[[app]]\nname = \"game\"\nsets = [\"agency-banned\"]\ndomains = [\"game.example\"]\n\n[[app]]\nname = \"left-out\"\ndomains = [\"other.example\"]\n",
	})
	code, out, stderr := runCheck(t, dir)
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out, stderr)
	}
	if strings.Contains(out, `app "game" is defined but`) || !strings.Contains(out, `app "left-out" is defined but`) {
		t.Errorf("unused-app warnings wrong:\n%s", out)
	}
	if got := row(out, "default", 3); strings.Join(got, " ") != "default blocked -" {
		t.Errorf("matrix row %v, want game blocked, left-out resolved for default", got)
	}
}
