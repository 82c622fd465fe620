package tomlpos

import "testing"

const doc = `# comment
title = "x" # trailing
[server]
listen = ["127.0.0.1:53",
  # a comment inside the array
  "[::1]:53"]
"quoted key" = 1

[[group]]
name = "a"
clients = [
  "10.0.0.0/8",
  "10.1.0.0/16",
]

[[group]]
name = """multi
line"""
clients = ["10.2.0.0/16"]

[[app]]
name = "x"
sources = [
  { file = "a.txt", format = "domains" },
  { file = "b.txt", format = "hosts" },
]
[[app.sources]]
file = "c"
[[app]]
name = 'y'
[upstream.forward]
zones = [["nested"], "z"]
`

func TestLines(t *testing.T) {
	ix := Parse([]byte(doc))
	tests := []struct {
		path string
		want int
	}{
		{"title", 2},
		{"server", 3},
		{"server.listen", 4},
		{"server.listen[0]", 4},
		{"server.listen[1]", 6},
		{"server.quoted key", 7},
		{"group[0]", 9},
		{"group[0].name", 10},
		{"group[0].clients", 11},
		{"group[0].clients[0]", 12},
		{"group[0].clients[1]", 13},
		{"group[1].name", 17},
		{"group[1].clients", 19},
		{"group[1].clients[0]", 19},
		{"app[0].sources[0]", 24},
		{"app[0].sources[0].file", 24},
		{"app[0].sources[1].format", 25},
		{"app[0].sources[0]", 24},
		{"app[0].sources[0].file", 24},
		{"app[1].name", 30},
		{"upstream.forward.zones[1]", 32},
		{"missing", 0},
	}
	for _, tt := range tests {
		if got := ix.Line(tt.path); got != tt.want {
			t.Errorf("Line(%q) = %d, want %d", tt.path, got, tt.want)
		}
	}
}

func TestFind(t *testing.T) {
	ix := Parse([]byte(doc))
	if got := ix.Find("group.clients"); got != 11 {
		t.Errorf("Find(group.clients) = %d, want 11", got)
	}
	path, line := ix.FindPath("app.name")
	if path != "app[0].name" || line != 22 {
		t.Errorf("FindPath(app.name) = %q, %d, want app[0].name, 22", path, line)
	}
	if got := ix.Find("nope"); got != 0 {
		t.Errorf("Find(nope) = %d, want 0", got)
	}
}

// TestPathAtPrefersTheKey: a key and its first element on one line
// ("domains = [" and its first string) name the key, every time; the
// index is a map, so one read in its order named either (seen as a flaky
// reload test).
func TestPathAtPrefersTheKey(t *testing.T) {
	ix := Parse([]byte("[[app]]\nname = \"a\"\ndomains = [\"x.test\", \"y.test\"\n"))
	for range 50 {
		if got := ix.pathAt("app.domains", 3); got != "app[0].domains" {
			t.Fatalf("pathAt = %q, want app[0].domains", got)
		}
	}
}
