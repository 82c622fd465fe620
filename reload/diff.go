package reload

import (
	"cmp"
	"hash/maphash"
	"log/slog"
	"net/netip"
	"slices"
	"strings"

	"github.com/appfence/appfence/blocklists"
	"github.com/appfence/appfence/policy"
)

// Changes is what a reload changed, for the log.
type Changes struct {
	Apps   []AppChange
	Groups []GroupChange
}

// AppChange is an app whose rules changed. A rule is its kind and name
// ("domain tiktok.com"); a rule that only moved to another line or file is
// unchanged.
type AppChange struct {
	App            string
	Added, Removed int // rules
	New, Gone      bool
}

// GroupChange is a group whose clients or app actions changed.
type GroupChange struct {
	Group                        string
	New, Gone                    bool
	ClientsAdded, ClientsRemoved []netip.Prefix
	Actions                      []ActionChange
}

// ActionChange is a change of what a group does with an app's names.
type ActionChange struct {
	App      string
	From, To policy.Action
}

func (a ActionChange) String() string { return a.App + ": " + a.From.String() + " -> " + a.To.String() }

// Empty reports whether nothing changed.
func (c Changes) Empty() bool { return len(c.Apps) == 0 && len(c.Groups) == 0 }

// Log writes one line per changed app and group.
func (c Changes) Log(log *slog.Logger) {
	for _, a := range c.Apps {
		log.Info("reload: app "+state(a.New, a.Gone), "app", a.App, "rules_added", a.Added, "rules_removed", a.Removed)
	}
	for _, g := range c.Groups {
		attrs := []any{"group", g.Group}
		if len(g.ClientsAdded) > 0 {
			attrs = append(attrs, "clients_added", joinPrefixes(g.ClientsAdded))
		}
		if len(g.ClientsRemoved) > 0 {
			attrs = append(attrs, "clients_removed", joinPrefixes(g.ClientsRemoved))
		}
		if len(g.Actions) > 0 {
			s := make([]string, len(g.Actions))
			for i, a := range g.Actions {
				s[i] = a.String()
			}
			attrs = append(attrs, "actions", strings.Join(s, "; "))
		}
		log.Info("reload: group "+state(g.New, g.Gone), attrs...)
	}
}

func state(isNew, gone bool) string {
	switch {
	case isNew:
		return "added"
	case gone:
		return "removed"
	}
	return "changed"
}

func joinPrefixes(ps []netip.Prefix) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ", ")
}

// digest holds, for each app, the sorted hashes of its rules: enough to
// count the rules a reload added and removed without keeping the old
// policy's rules alive.
type digest map[string][]uint64

// newDigest hashes every rule of set with seed.
func newDigest(set *blocklists.Set, seed maphash.Seed) digest {
	byApp := make([][]uint64, len(set.Apps)) // by App.ID, sized by the rule counts
	for _, a := range set.Apps {
		byApp[a.ID] = make([]uint64, 0, set.Rules[a.Name])
	}
	var h maphash.Hash
	h.SetSeed(seed)
	for r := range set.Matcher.All() {
		h.Reset()
		h.WriteByte(byte(r.Kind))
		h.WriteString(r.Rule)
		byApp[r.App.ID] = append(byApp[r.App.ID], h.Sum64())
	}
	d := make(digest, len(set.Apps))
	for _, a := range set.Apps {
		slices.Sort(byApp[a.ID])
		d[a.Name] = byApp[a.ID]
	}
	return d
}

// diffSorted counts the values only in a and only in b.
func diffSorted(a, b []uint64) (onlyA, onlyB int) {
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		switch {
		case a[i] < b[j]:
			onlyA++
			i++
		case a[i] > b[j]:
			onlyB++
			j++
		default:
			i++
			j++
		}
	}
	return onlyA + len(a) - i, onlyB + len(b) - j
}

// diff compares the old policy and its digest with the new ones.
func diff(old, cur *policy.Policy, oldD, curD digest) Changes {
	var c Changes
	names := appNames(old, cur)
	for _, name := range names {
		o, n := old.Set.App(name), cur.Set.App(name)
		removed, added := diffSorted(oldD[name], curD[name])
		ac := AppChange{App: name, Added: added, Removed: removed, New: o == nil, Gone: n == nil}
		if ac.New || ac.Gone || added > 0 || removed > 0 {
			c.Apps = append(c.Apps, ac)
		}
	}
	for _, g := range old.Groups {
		if cur.Group(g.Name) == nil {
			c.Groups = append(c.Groups, GroupChange{Group: g.Name, Gone: true, ClientsRemoved: g.Clients})
		}
	}
	for _, n := range cur.Groups {
		o := old.Group(n.Name)
		gc := GroupChange{Group: n.Name, New: o == nil}
		var oldClients []netip.Prefix
		if o != nil {
			oldClients = o.Clients
		}
		gc.ClientsAdded = minus(n.Clients, oldClients)
		gc.ClientsRemoved = minus(oldClients, n.Clients)
		for _, app := range names {
			from, to := policy.ActionResolve, policy.ActionResolve
			if o != nil {
				from = o.Action(old.Set.App(app))
			}
			to = n.Action(cur.Set.App(app))
			if from != to {
				gc.Actions = append(gc.Actions, ActionChange{App: app, From: from, To: to})
			}
		}
		if gc.New || len(gc.ClientsAdded) > 0 || len(gc.ClientsRemoved) > 0 || len(gc.Actions) > 0 {
			c.Groups = append(c.Groups, gc)
		}
	}
	return c
}

// appNames returns the names of the apps of both policies, sorted.
func appNames(a, b *policy.Policy) []string {
	var names []string
	for _, p := range []*policy.Policy{a, b} {
		for _, app := range p.Set.Apps {
			if !slices.Contains(names, app.Name) {
				names = append(names, app.Name)
			}
		}
	}
	slices.SortFunc(names, cmp.Compare)
	return names
}

// minus returns the prefixes of a that are not in b.
func minus(a, b []netip.Prefix) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range a {
		if !slices.Contains(b, p) {
			out = append(out, p)
		}
	}
	return out
}
