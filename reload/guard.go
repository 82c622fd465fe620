package reload

import (
	"fmt"
	"strings"

	"github.com/appfence/appfence/blocklists"
	"github.com/appfence/appfence/policy"
)

// The ban fails closed on lists (issue 17 item 3): a list file truncated,
// replaced by an HTML error page or botched in an edit parses as few or no
// rules without being an error. A reload that would take from an app
// blocked for some group more than blocking.max_rule_loss of its rules is
// refused like any invalid reload: the running policy keeps serving, and
// the error names the app and the sources that shrank. `appfence check`,
// which has no running policy to compare with, reports a blocking app's
// local list that is empty or mostly invalid lines (SourceProblems).

// RuleLossError is a reload refused because a blocking app would lose more
// of its rules than blocking.max_rule_loss allows.
type RuleLossError struct {
	App      string
	Old, New int
	MaxLoss  float64
	// Sources are the app's lists that lost rules, each with its counts.
	Sources []string
}

func (e *RuleLossError) Error() string {
	loss := 1 - float64(e.New)/float64(e.Old)
	msg := fmt.Sprintf("app %q would go from %d to %d rules (%.0f%% lost, blocking.max_rule_loss = %.0f%%): the running policy keeps serving",
		e.App, e.Old, e.New, 100*loss, 100*e.MaxLoss)
	if len(e.Sources) > 0 {
		msg += "; lists that shrank: " + strings.Join(e.Sources, ", ")
	}
	return msg
}

// blocking reports whether app is blocked for some group of p.
func blocking(p *policy.Policy, app *blocklists.App) bool {
	for _, g := range p.Groups {
		if g.Action(app) == policy.ActionBlock {
			return true
		}
	}
	return false
}

// ruleLoss returns the apps blocked in both old and p that would lose more
// than p's blocking.max_rule_loss of their rules in going from old to p;
// none when old is nil. An app that stops being
// blocked, or is no longer defined, is the administrator's decision and
// passes.
func ruleLoss(old, p *policy.Policy) []*RuleLossError {
	if old == nil {
		return nil
	}
	maxLoss := p.Config.Blocking.MaxRuleLoss
	var errs []*RuleLossError
	for _, oa := range old.Set.Apps {
		na := p.Set.App(oa.Name)
		if na == nil || !blocking(old, oa) || !blocking(p, na) {
			continue
		}
		before, after := old.Set.Rules[oa.Name], p.Set.Rules[na.Name]
		if before == 0 || float64(before-after) <= maxLoss*float64(before) {
			continue
		}
		e := &RuleLossError{App: na.Name, Old: before, New: after, MaxLoss: maxLoss}
		for _, src := range na.Sources {
			name := sourceName(na, src)
			o, n := old.Set.Sources[name].Rules, p.Set.Sources[name].Rules
			if n < o {
				e.Sources = append(e.Sources, fmt.Sprintf("%s (%d → %d rules)", name, o, n))
			}
		}
		errs = append(errs, e)
	}
	return errs
}

// sourceName is the key of src of app a in blocklists.Set.Sources.
func sourceName(a *blocklists.App, src blocklists.Source) string {
	if a.Builtin && src.URL == "" {
		return blocklists.BuiltinPrefix + src.File
	}
	return src.Name()
}

// SourceProblems returns, for each local list of an app blocked for some
// group of p, why the list may have lost its rules: it is empty, no line of
// it is a rule, or more of its lines are invalid than are rules (an HTML
// page where a list was expected). `appfence check` reports them as
// errors and `serve` logs them at start.
func SourceProblems(p *policy.Policy) []error {
	var errs []error
	for _, a := range p.Set.Apps {
		if a.Builtin || !blocking(p, a) {
			continue
		}
		for _, src := range a.Sources {
			if src.URL != "" {
				continue // remote sources keep their last good copy
			}
			st, ok := p.Set.Sources[src.File]
			if !ok {
				continue
			}
			var why string
			switch {
			case st.Lines == 0:
				why = "is empty"
			case st.Rules == 0 && st.Invalid+st.Unsupported > 0:
				why = fmt.Sprintf("has no rule: %d of its %d lines are invalid or unsupported", st.Invalid+st.Unsupported, st.Lines)
			case st.Invalid > st.Rules:
				why = fmt.Sprintf("has more invalid lines (%d) than rules (%d)", st.Invalid, st.Rules)
			default:
				continue
			}
			errs = append(errs, fmt.Errorf("%s: list of blocked app %q %s: is it truncated or not a %s list?", src.File, a.Name, why, src.Format))
		}
	}
	return errs
}
