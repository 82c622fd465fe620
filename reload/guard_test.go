package reload

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestRuleLossKeepsOldPolicy: a blocked app's list truncated, replaced by
// an HTML page or emptied loses more than blocking.max_rule_loss of its
// rules; the reload is refused with the file named, counted, and the
// names of the list stay blocked on real sockets. A loss within the bound
// reloads.
func TestRuleLossKeepsOldPolicy(t *testing.T) {
	var list strings.Builder
	for i := range 10 {
		fmt.Fprintf(&list, "n%d.chat.test\n", i)
	}
	list.WriteString("chat.test\n")
	app := "[[app]]\nname = \"chat\"\nsources = [{ file = \"chat.txt\", format = \"domains\" }]\n"
	e := newEnv(t, `block = ["tiktok", "chat"]`+"\nmax_rule_loss = 0.5", map[string]string{
		"apps/chat.toml": app, "apps/chat.txt": list.String(),
	})
	listFile := filepath.Join(e.dir, "apps", "chat.txt")
	e.expect("chat.test.", "", blocked, 0)
	tests := []struct{ name, text string }{
		{"emptied", ""},
		{"html page", "<html>\n<head><title>502 Bad Gateway</title></head>\n<body>oops</body>\n</html>\n"},
		{"truncated", "n0.chat.test\nn1.chat.test\nn2.chat.test\n"},
	}
	for i, tt := range tests {
		writeFile(t, listFile, tt.text)
		err := e.reloader.Reload(tt.name)
		if err == nil || !strings.Contains(err.Error(), `app "chat" would go from 11 to`) || !strings.Contains(err.Error(), listFile) {
			t.Errorf("%s: reload error %v, want the rule loss of chat naming %s", tt.name, err, listFile)
		}
		if got := testutil.ToFloat64(e.metrics.ReloadRuleLoss.WithLabelValues("chat")); got != float64(i+1) {
			t.Errorf("%s: config_reload_rule_loss_total{chat} = %v", tt.name, got)
		}
		if got := testutil.ToFloat64(e.metrics.LastReloadOK); got != 0 {
			t.Errorf("%s: last_reload_successful = %v", tt.name, got)
		}
		e.expect("chat.test.", "", blocked, 0)
	}
	// 11 → 6 rules: 45 % lost, within the bound.
	writeFile(t, listFile, "chat.test\nn0.chat.test\nn1.chat.test\nn2.chat.test\nn3.chat.test\nn4.chat.test\n")
	if err := e.reloader.Reload("smaller"); err != nil {
		t.Fatalf("a loss within max_rule_loss was refused: %v", err)
	}
	e.expect("chat.test.", "", blocked, 0)
	// No longer blocked: the administrator's decision, not a loss.
	writeFile(t, listFile, "")
	e.writeConfig(`block = ["tiktok"]`)
	if err := e.reloader.Reload("unblocked"); err != nil {
		t.Fatalf("an app taken out of block was refused: %v", err)
	}
	e.expect("chat.test.", "192.0.2.40", resolved, 0)
}

// TestSourceProblems: what `check` reports of a blocked app's local lists.
func TestSourceProblems(t *testing.T) {
	app := "[[app]]\nname = \"chat\"\nsources = [{ file = \"chat.txt\", format = \"domains\" }]\n"
	tests := []struct{ name, text, want string }{
		{"empty", "", "is empty"},
		{"html", "<html>\n<body>x</body>\n</html>\n", "has no rule"},
		{"mostly invalid", "chat.test\n<a>\n<b>\n", "more invalid lines"},
		{"good", "chat.test\n# comment\n", ""},
		{"comments only", "# placeholder\n", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, `block = ["tiktok", "chat"]`, map[string]string{"apps/chat.toml": app, "apps/chat.txt": tt.text})
			errs := SourceProblems(e.handler.State().Policy)
			if tt.want == "" {
				if len(errs) != 0 {
					t.Errorf("problems %v, want none", errs)
				}
				return
			}
			if len(errs) != 1 || !strings.Contains(errs[0].Error(), tt.want) || !strings.Contains(errs[0].Error(), "chat.txt") {
				t.Errorf("problems %v, want one naming chat.txt: %q", errs, tt.want)
			}
		})
	}
}
