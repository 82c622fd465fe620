// Package policy decides what AppFence does with a query: whether the client
// may ask at all, which group it belongs to, which app rule the name hits and
// what that app's action is for the group. A Policy is compiled once from the
// config and the app definitions, is immutable, and is swapped whole on
// reload, so a query never sees half a change.
//
// The Decision it returns is the one truth that the answer, the metrics and
// the query log all use.
//
// It owns the decision and the explanation of a query. It may import
// config, blocklists and internal/dnsname, internal/iptable,
// internal/tomlpos; not metrics, the resolver or reload, which use it.
package policy

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/appfence/appfence/blocklists"
	"github.com/appfence/appfence/config"
	"github.com/appfence/appfence/internal/iptable"
	"github.com/appfence/appfence/internal/tomlpos"
)

// Action is what AppFence does with a query.
type Action uint8

// Actions, with the names used in metrics and logs.
const (
	ActionResolve Action = iota // forwarded; no app rule applies
	ActionBlock                 // answered with the block response
	ActionExempt                // a blocked app, resolved because the group is exempted
	ActionMonitor               // resolved, counted and logged as monitored
	ActionRefuse                // the client is outside allow_clients
)

// Actions lists every action, in order.
var Actions = []Action{ActionResolve, ActionBlock, ActionExempt, ActionMonitor, ActionRefuse}

func (a Action) String() string {
	switch a {
	case ActionResolve:
		return "resolved"
	case ActionBlock:
		return "blocked"
	case ActionExempt:
		return "exempted"
	case ActionMonitor:
		return "monitored"
	case ActionRefuse:
		return "refused"
	}
	return "unknown"
}

// AppAction reports whether a is what an app's rule did for a group:
// blocked, exempted or monitored. These are counted per app and logged in
// the query log's "blocked" scope.
func (a Action) AppAction() bool {
	return a == ActionBlock || a == ActionExempt || a == ActionMonitor
}

// Group is a device group: the clients it holds and each app's action.
type Group struct {
	Name    string
	Index   int // position in Policy.Groups; 0 is the default group
	Clients []netip.Prefix
	// actions holds the action for each app, by blocklists.App.ID.
	actions []Action
	// Allowlist is mode = "allowlist": only the names of the apps in
	// approved resolve; the others get the block answer.
	Allowlist bool
	// approved marks, by blocklists.App.ID, the apps an allowlist group
	// allows.
	approved []bool
	// active marks, by blocklists.App.ID, the apps with an action other
	// than ActionResolve: only their block rules take part in matching.
	active []bool
}

// Action returns the group's action for an app.
func (g *Group) Action(app *blocklists.App) Action {
	if app == nil || app.ID >= len(g.actions) {
		return ActionResolve
	}
	return g.actions[app.ID]
}

// Decision is what the policy decided for one query.
type Decision struct {
	Action Action
	// Group is the client's group; nil when the client is refused.
	Group *Group
	// Match is the best app rule for the name; Match.App is nil when no rule
	// matched. An allow rule resolves the name (Action is ActionResolve).
	Match blocklists.Match
	// Via says where Match was found: the query name (ViaName), a canary
	// name, or a record of the upstream's answer (see Inspect).
	Via Via
	// Found is what in the answer matched, for Via.Answer(): the canonical
	// name (a CNAME, DNAME or SVCB target) or the address.
	Found string
	// Unapproved is set when an allowlist group blocks a name that no
	// approved app holds.
	Unapproved bool
}

// UnapprovedApp is the app name counted for names an allowlist group does
// not approve.
const UnapprovedApp = "unapproved"

// App returns the name of the decision's app, or "".
func (d *Decision) App() string {
	if d.Unapproved {
		return UnapprovedApp
	}
	if d.Match.App == nil {
		return ""
	}
	return d.Match.App.Name
}

// Policy is a compiled, immutable policy.
type Policy struct {
	// Config and Set are what the policy was built from.
	Config *config.Config
	Set    *blocklists.Set
	// Groups lists the default group first, then the configured groups.
	Groups []*Group
	// Loaded is when the policy was built; its Unix time is the serial of
	// block answers' SOA.
	Loaded time.Time
	// Warnings are things an administrator should look at; they do not stop
	// the policy from working.
	Warnings []string

	allowed *iptable.Table[struct{}]
	groups  *iptable.Table[*Group]
	// byClientID and byCert place clients by ClientID and by verified
	// certificate name (identity.go).
	byClientID map[string]*Group
	byCert     map[string]*Group
	anyBlocked bool
	// ipRanges holds every app's ip_ranges, for answer inspection.
	ipRanges *iptable.Table[ipRule]
	// counted is, by app ID, whether the app has an action other than
	// resolved for some group; only those are looked for in answers.
	counted []bool
	// inspects is blocking.inspect_cnames with some app counted.
	inspects bool
	// canaryApp is the app of the canary names, nil if not defined.
	canaryApp *blocklists.App
}

// Build compiles a policy. Every app named in the config must be defined;
// each unknown one is reported with the config file and line.
func Build(cfg *config.Config, set *blocklists.Set) (*Policy, error) {
	p := &Policy{Config: cfg, Set: set, Loaded: time.Now()}
	var errs []error
	check := func(refs []config.AppRef) {
		for _, r := range refs {
			if len(set.Members(r.Name)) == 0 {
				errs = append(errs, &tomlpos.Error{File: cfg.File, Line: r.Line, Key: r.Key,
					Msg: fmt.Sprintf("unknown app %q (defined apps: %s; sets: %s)", r.Name, appNames(set), strings.Join(set.SetNames(), ", "))})
			}
		}
	}
	check(cfg.Blocking.Block)
	check(cfg.Blocking.Monitor)
	for _, g := range cfg.Groups {
		check(g.Allow)
		check(g.Block)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}

	allowed := map[netip.Prefix]struct{}{}
	for _, pr := range cfg.Server.AllowClients {
		allowed[pr] = struct{}{}
	}
	p.allowed = iptable.New(allowed)

	def := &Group{Name: config.DefaultGroup}
	p.Groups = []*Group{def}
	members := map[netip.Prefix]*Group{}
	var defCfg config.Group
	for _, gc := range cfg.Groups {
		if gc.Name == config.DefaultGroup {
			defCfg = gc
			continue
		}
		g := &Group{Name: gc.Name, Index: len(p.Groups), Clients: gc.Clients, Allowlist: gc.Allowlist}
		p.Groups = append(p.Groups, g)
		for _, pr := range gc.Clients {
			members[pr] = g
		}
		p.identities(g, gc)
		p.actions(g, gc)
		for _, pr := range gc.Clients {
			if !p.allowed.Contains(pr.Addr()) {
				p.Warnings = append(p.Warnings, fmt.Sprintf("%s:%d: group %q: clients %s are outside server.allow_clients and will be refused",
					cfg.File, gc.Line, gc.Name, pr))
			}
		}
	}
	def.Allowlist = defCfg.Allowlist
	p.actions(def, defCfg)
	p.groups = iptable.New(members)
	p.counted = make([]bool, len(set.Apps))
	for _, g := range p.Groups {
		if g.Allowlist || slices.Contains(g.actions, ActionBlock) {
			p.anyBlocked = true
		}
		g.active = make([]bool, len(g.actions))
		for id, a := range g.actions {
			if a != ActionResolve {
				p.counted[id] = true
				g.active[id] = true
			}
		}
	}
	p.inspects = cfg.Blocking.InspectCNAMEs && slices.Contains(p.counted, true)
	p.ipRanges = ipRules(set)
	p.canaryApp = set.App(CanaryApp)
	p.Warnings = append(p.Warnings, p.upstreamWarnings()...)
	return p, nil
}

// actions fills g.actions from the global lists and the group's own.
func (p *Policy) actions(g *Group, gc config.Group) {
	// has reports whether refs name the app, directly or through a set.
	has := func(refs []config.AppRef, name string) bool {
		return slices.ContainsFunc(refs, func(r config.AppRef) bool { return slices.Contains(p.Set.Members(r.Name), name) })
	}
	b := p.Config.Blocking
	g.actions = make([]Action, len(p.Set.Apps))
	if g.Allowlist {
		// Only the approved apps' rules take part; their names resolve.
		g.approved = make([]bool, len(p.Set.Apps))
		for _, app := range p.Set.Apps {
			g.approved[app.ID] = has(gc.Allow, app.Name)
		}
		return
	}
	for _, app := range p.Set.Apps {
		blocked := has(b.Block, app.Name) || has(gc.Block, app.Name)
		monitored := has(b.Monitor, app.Name)
		var a Action
		switch {
		case has(gc.Allow, app.Name) && (blocked || monitored):
			a = ActionExempt
		case has(gc.Allow, app.Name):
			p.Warnings = append(p.Warnings, fmt.Sprintf("%s:%d: group %q allows app %q, which is not blocked or monitored for it",
				p.Config.File, gc.Line, g.Name, app.Name))
		case blocked:
			a = ActionBlock
		case monitored:
			a = ActionMonitor
		}
		g.actions[app.ID] = a
	}
}

func appNames(set *blocklists.Set) string {
	s := ""
	for i, a := range set.Apps {
		if i > 0 {
			s += ", "
		}
		s += a.Name
	}
	return s
}

// Allowed reports whether client may use the resolver.
func (p *Policy) Allowed(client netip.Addr) bool {
	return p.allowed.Contains(client)
}

// GroupOf returns the group of a client: the group with the longest prefix
// containing it, or the default group.
func (p *Policy) GroupOf(client netip.Addr) *Group {
	if g, _, ok := p.groups.Lookup(client); ok {
		return g
	}
	return p.Groups[0]
}

// Group returns the group with the given name, or nil.
func (p *Policy) Group(name string) *Group {
	for _, g := range p.Groups {
		if g.Name == name {
			return g
		}
	}
	return nil
}

// AnyBlocked reports whether any group has an app blocked.
func (p *Policy) AnyBlocked() bool { return p.anyBlocked }

// Decide returns the decision for a query from client for name, which must
// be canonical (dnsname.Canonical). While some app is blocked, a canary
// name is blocked for every group (see canary). It does not allocate.
func (p *Policy) Decide(client netip.Addr, name string) Decision {
	if !p.allowed.Contains(client) {
		return Decision{Action: ActionRefuse}
	}
	return p.decide(p.GroupOf(client), name)
}

// decide returns the decision for a query for name from a client of group
// g.
func (p *Policy) decide(g *Group, name string) Decision {
	d := Decision{Group: g}
	if p.anyBlocked && p.canaryApp != nil && isCanary(name) {
		return p.canary(d, name)
	}
	if g.Allowlist {
		m, ok := p.Set.Matcher.MatchIn(name, g.approved)
		if !ok || m.Kind == blocklists.KindAllow {
			d.Action, d.Unapproved = ActionBlock, true
			return d
		}
		d.Match = m
		return d
	}
	m, ok := p.Set.Matcher.MatchIn(name, g.active)
	if !ok {
		return d
	}
	d.Match = m
	if m.Kind != blocklists.KindAllow {
		d.Action = d.Group.Action(m.App)
	}
	return d
}
