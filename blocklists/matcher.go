package blocklists

import (
	"cmp"
	"hash/maphash"
	"iter"
	"slices"
	"strings"
)

// Kind is what a rule does and how it matches.
type Kind uint8

// Rule kinds.
const (
	KindNone    Kind = iota
	KindDomain       // the name and every name under it
	KindExact        // only that name
	KindPattern      // '*' within labels; also the names under a match
	KindAllow        // an exception: the name and every name under it resolve
	// KindIPRange is an ip_ranges entry. The Matcher never returns it: it is
	// the kind of a rule found through an address in an upstream answer.
	KindIPRange
)

func (k Kind) String() string {
	switch k {
	case KindDomain:
		return "domain"
	case KindExact:
		return "exact"
	case KindPattern:
		return "pattern"
	case KindAllow:
		return "allow"
	case KindIPRange:
		return "ip_range"
	}
	return "none"
}

// Origin is where a rule was written.
type Origin struct {
	File string
	Line int
}

func (o Origin) String() string {
	if o.Line == 0 {
		return o.File
	}
	return o.File + ":" + itoa(o.Line)
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b [20]byte
	i := len(b)
	for n > 0 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	return string(b[i:])
}

// Match is the best rule for a name.
type Match struct {
	App    *App
	Rule   string // the rule as compiled: "tiktok.com", "p16-tiktok-*.ibyteimg.com"
	Kind   Kind
	Origin Origin
}

// Matcher answers "which rule is best for this name" over any number of
// rules, without allocating. The best rule is the one matching the longest
// part of the name; at equal length an allow rule wins over a block rule.
// A Matcher is immutable and safe for concurrent use.
type Matcher struct {
	names    string   // every rule name, back to back
	entries  []entry  // entries[0] is unused
	slots    []uint32 // open addressing into entries; 0 is empty
	mask     uint32
	seed     maphash.Seed
	filter   filter // the names' hashes, to pass over absent names quickly
	rules    []rule // rules[0] is unused
	files    []string
	apps     []*App
	patterns map[string][]pattern // by the literal tail after the last wildcard label
}

// entry is one distinct name and the rules written for it.
type entry struct {
	off    uint32
	n      uint16
	hash   uint32
	domain uint32 // rule index, 0 = none
	exact  uint32
	allow  uint32
}

type rule struct {
	app  uint32
	file uint32
	line uint32
}

type pattern struct {
	text  string   // as written, canonical
	head  []string // the labels before the tail, some with '*'
	rule  uint32
	allow bool
}

func (m *Matcher) lookup(name string) *entry {
	if len(m.slots) == 0 {
		return nil
	}
	h64 := maphash.String(m.seed, name)
	if !m.filter.has(h64) {
		return nil
	}
	h := uint32(h64)
	for i := h & m.mask; ; i = (i + 1) & m.mask {
		idx := m.slots[i]
		if idx == 0 {
			return nil
		}
		e := &m.entries[idx]
		if e.hash == h && int(e.n) == len(name) && m.names[e.off:e.off+uint32(e.n)] == name {
			return e
		}
	}
}

// Len returns the number of distinct names and patterns in the matcher.
func (m *Matcher) Len() int {
	n := len(m.entries) - 1
	for _, ps := range m.patterns {
		n += len(ps)
	}
	return max(n, 0)
}

// Match returns the best rule for name, which must be canonical (see
// dnsname.Canonical). ok is false when no rule matches.
func (m *Matcher) Match(name string) (match Match, ok bool) {
	return m.match(name, true, nil)
}

// MatchIn is Match over the block rules of the apps marked in apps (by
// App.ID) and every allow rule: the rules of other apps are passed over as
// if they were not written, so that an app without an action can never
// shadow a shorter rule of an app that has one. A nil apps marks every app.
func (m *Matcher) MatchIn(name string, apps []bool) (match Match, ok bool) {
	return m.match(name, true, apps)
}

// MatchBlock is Match without the allow rules: the block rule a name would
// hit if no exception were written.
func (m *Matcher) MatchBlock(name string) (match Match, ok bool) {
	return m.match(name, false, nil)
}

// in reports whether rule idx belongs to an app marked in apps.
func (m *Matcher) in(idx uint32, apps []bool) bool {
	if apps == nil {
		return true
	}
	app := m.rules[idx].app
	return int(app) < len(apps) && apps[app]
}

func (m *Matcher) match(name string, withAllow bool, apps []bool) (match Match, ok bool) {
	if name == "" {
		return match, false
	}
	// A pattern can match a longer part of the name than the entry found
	// first by the walk below, so patterns are settled first.
	pStart, pIdx := -1, uint32(0)
	pText, pAllow := "", false
	if len(m.patterns) > 0 {
		pStart, pIdx, pText, pAllow = m.matchPatterns(name, withAllow, apps)
	}
	for i := 0; ; {
		if pStart >= 0 && i > pStart {
			break
		}
		if e := m.lookup(name[i:]); e != nil {
			rn := m.names[e.off : e.off+uint32(e.n)]
			switch {
			case withAllow && e.allow != 0:
				return m.result(e.allow, rn, KindAllow), true
			case pStart == i && pAllow:
				return m.result(pIdx, pText, KindAllow), true
			case i == 0 && e.exact != 0 && m.in(e.exact, apps):
				return m.result(e.exact, rn, KindExact), true
			case e.domain != 0 && m.in(e.domain, apps):
				return m.result(e.domain, rn, KindDomain), true
			}
		}
		j := strings.IndexByte(name[i:], '.')
		if j < 0 {
			break
		}
		i += j + 1
	}
	if pStart >= 0 {
		kind := KindPattern
		if pAllow {
			kind = KindAllow
		}
		return m.result(pIdx, pText, kind), true
	}
	return match, false
}

// All yields every compiled rule once, as the Match it gives: names in the
// order they were added, then patterns.
func (m *Matcher) All() iter.Seq[Match] {
	return func(yield func(Match) bool) {
		for i := 1; i < len(m.entries); i++ {
			e := &m.entries[i]
			name := m.names[e.off : e.off+uint32(e.n)]
			for _, r := range [...]struct {
				idx  uint32
				kind Kind
			}{{e.domain, KindDomain}, {e.exact, KindExact}, {e.allow, KindAllow}} {
				if r.idx != 0 && !yield(m.result(r.idx, name, r.kind)) {
					return
				}
			}
		}
		for _, p := range m.sortedPatterns() {
			kind := KindPattern
			if p.allow {
				kind = KindAllow
			}
			if !yield(m.result(p.rule, p.text, kind)) {
				return
			}
		}
	}
}

// sortedPatterns returns the patterns in the order they were added.
func (m *Matcher) sortedPatterns() []pattern {
	var ps []pattern
	for _, list := range m.patterns {
		ps = append(ps, list...)
	}
	slices.SortFunc(ps, func(a, b pattern) int { return cmp.Compare(a.rule, b.rule) })
	return ps
}

// IdleAllows returns the allow rules that let nothing through: no block
// rule of any app (domains, exact or patterns, whether the app is blocked
// or not) could match a name they allow with a shorter or equal match.
//
// For an allow name N that is: no domains rule at N or at a name above it,
// no exact rule for N, and no pattern matching N or a name above it (a
// block rule below N is longer than the allow rule and wins anyway). For an
// allow pattern, whose names all lie under its fixed tail T (the labels
// after its last '*'): no domains rule or pattern covering T, and no block
// rule under T. The second test is conservative: a pattern is only
// reported when it certainly lets nothing through.
func (m *Matcher) IdleAllows() []Match {
	var idle []Match
	for r := range m.All() {
		if r.Kind != KindAllow {
			continue
		}
		if !strings.Contains(r.Rule, "*") {
			if _, ok := m.MatchBlock(r.Rule); !ok {
				idle = append(idle, r)
			}
			continue
		}
		tail := r.Rule[strings.LastIndexByte(r.Rule, '*'):]
		tail = tail[strings.IndexByte(tail, '.')+1:]
		if b, ok := m.MatchBlock(tail); ok && b.Kind != KindExact || m.blockUnder(tail) {
			continue
		}
		idle = append(idle, r)
	}
	return idle
}

// blockUnder reports whether a block rule lies strictly under name.
func (m *Matcher) blockUnder(name string) bool {
	suffix := "." + name
	for r := range m.All() {
		if r.Kind != KindAllow && strings.HasSuffix(r.Rule, suffix) {
			return true
		}
	}
	return false
}

func (m *Matcher) result(idx uint32, text string, kind Kind) Match {
	r := m.rules[idx]
	return Match{App: m.apps[r.app], Rule: text, Kind: kind, Origin: Origin{File: m.files[r.file], Line: int(r.line)}}
}

// matchPatterns returns the start of the longest pattern match in name, or
// -1. At equal length an allow pattern wins.
func (m *Matcher) matchPatterns(name string, withAllow bool, apps []bool) (start int, idx uint32, text string, allow bool) {
	start = -1
	for j := 0; j < len(name); {
		k := strings.IndexByte(name[j:], '.')
		if k < 0 {
			break
		}
		j += k + 1 // name[j:] is a candidate tail
		for _, p := range m.patterns[name[j:]] {
			if p.allow && !withAllow || !p.allow && !m.in(p.rule, apps) {
				continue
			}
			i, ok := matchHead(name[:j-1], p.head)
			if !ok {
				continue
			}
			if start < 0 || i < start || i == start && p.allow && !allow {
				start, idx, text, allow = i, p.rule, p.text, p.allow
			}
		}
	}
	return start, idx, text, allow
}

// matchHead matches the last len(head) labels of prefix against head and
// returns where the match starts.
func matchHead(prefix string, head []string) (int, bool) {
	end := len(prefix)
	for h := len(head) - 1; h >= 0; h-- {
		if end < 0 {
			return 0, false
		}
		start := strings.LastIndexByte(prefix[:end], '.') + 1
		if !globLabel(head[h], prefix[start:end]) {
			return 0, false
		}
		if h == 0 {
			return start, true
		}
		end = start - 1
	}
	return 0, false
}

// globLabel matches one label against a pattern in which '*' stands for any
// run of characters.
func globLabel(pat, s string) bool {
	px, sx := 0, 0
	star, mark := -1, 0
	for sx < len(s) {
		switch {
		case px < len(pat) && pat[px] == '*':
			star, mark = px, sx
			px++
		case px < len(pat) && pat[px] == s[sx]:
			px++
			sx++
		case star >= 0:
			px = star + 1
			mark++
			sx = mark
		default:
			return false
		}
	}
	for px < len(pat) && pat[px] == '*' {
		px++
	}
	return px == len(pat)
}

// builder compiles rules into a Matcher.
type builder struct {
	names   strings.Builder
	entries []entry
	slots   []uint32
	mask    uint32
	seed    maphash.Seed
	rules   []rule
	files   []string
	fileIdx map[string]uint32
	apps    []*App
	// patterns by tail
	patterns map[string][]pattern
	// conflicts counts names given to two different apps; the first wins.
	conflicts []Conflict
}

// Conflict is a name written as a rule in two apps; the first one loaded
// keeps it.
type Conflict struct {
	Name      string
	Kept      *App
	KeptAt    Origin
	Dropped   *App
	DroppedAt Origin
}

// newBuilder returns a builder sized for about rules rules whose names
// take about bytes bytes.
func newBuilder(rules, bytes int) *builder {
	b := &builder{
		entries:  make([]entry, 1, rules+1),
		rules:    make([]rule, 1, rules+1),
		seed:     maphash.MakeSeed(),
		fileIdx:  map[string]uint32{},
		patterns: map[string][]pattern{},
	}
	b.names.Grow(bytes)
	n := 16
	for n < 2*rules {
		n *= 2
	}
	b.slots = make([]uint32, n)
	b.mask = uint32(n - 1)
	return b
}

func (b *builder) file(name string) uint32 {
	if i, ok := b.fileIdx[name]; ok {
		return i
	}
	b.files = append(b.files, name)
	i := uint32(len(b.files) - 1)
	b.fileIdx[name] = i
	return i
}

func (b *builder) addApp(a *App) uint32 {
	b.apps = append(b.apps, a)
	return uint32(len(b.apps) - 1)
}

// add records a rule for a canonical name. It reports whether the rule was
// new (false for a duplicate or a conflict).
func (b *builder) add(name string, kind Kind, app, file uint32, line int) bool {
	e := b.find(name)
	var slot *uint32
	switch kind {
	case KindDomain:
		slot = &e.domain
	case KindExact:
		slot = &e.exact
	case KindAllow:
		slot = &e.allow
	default:
		panic("blocklists: add with kind " + kind.String())
	}
	if *slot != 0 {
		if prev := b.rules[*slot]; prev.app != app {
			b.conflicts = append(b.conflicts, Conflict{
				Name: name, Kept: b.apps[prev.app], KeptAt: Origin{b.files[prev.file], int(prev.line)},
				Dropped: b.apps[app], DroppedAt: Origin{b.files[file], line},
			})
		}
		return false
	}
	b.rules = append(b.rules, rule{app: app, file: file, line: uint32(line)})
	*slot = uint32(len(b.rules) - 1)
	return true
}

// find returns the entry for name, creating it if needed.
func (b *builder) find(name string) *entry {
	h := uint32(maphash.String(b.seed, name))
	names := b.names.String()
	i := h & b.mask
	for ; b.slots[i] != 0; i = (i + 1) & b.mask {
		e := &b.entries[b.slots[i]]
		if e.hash == h && int(e.n) == len(name) && names[e.off:e.off+uint32(e.n)] == name {
			return e
		}
	}
	off := b.names.Len()
	b.names.WriteString(name)
	b.entries = append(b.entries, entry{off: uint32(off), n: uint16(len(name)), hash: h})
	b.slots[i] = uint32(len(b.entries) - 1)
	if 2*(len(b.entries)-1) > len(b.slots) {
		b.grow()
		return &b.entries[len(b.entries)-1]
	}
	return &b.entries[b.slots[i]]
}

func (b *builder) grow() {
	slots := make([]uint32, 2*len(b.slots))
	mask := uint32(len(slots) - 1)
	for idx := 1; idx < len(b.entries); idx++ {
		i := b.entries[idx].hash & mask
		for slots[i] != 0 {
			i = (i + 1) & mask
		}
		slots[i] = uint32(idx)
	}
	b.slots, b.mask = slots, mask
}

// addPattern records a pattern rule (canonical, with '*' in some labels). It
// reports whether the pattern was new.
func (b *builder) addPattern(text string, allow bool, app, file uint32, line int) bool {
	labels := strings.Split(text, ".")
	last := 0
	for i, l := range labels {
		if strings.Contains(l, "*") {
			last = i
		}
	}
	tail := strings.Join(labels[last+1:], ".")
	for _, p := range b.patterns[tail] {
		if p.text == text && p.allow == allow {
			if prev := b.rules[p.rule]; prev.app != app {
				b.conflicts = append(b.conflicts, Conflict{
					Name: text, Kept: b.apps[prev.app], KeptAt: Origin{b.files[prev.file], int(prev.line)},
					Dropped: b.apps[app], DroppedAt: Origin{b.files[file], line},
				})
			}
			return false
		}
	}
	b.rules = append(b.rules, rule{app: app, file: file, line: uint32(line)})
	b.patterns[tail] = append(b.patterns[tail], pattern{
		text: text, head: labels[:last+1], rule: uint32(len(b.rules) - 1), allow: allow,
	})
	return true
}

func (b *builder) matcher() *Matcher {
	// Where the size estimate was well above what the lists held, the
	// serving matcher keeps a copy without the slack.
	names := b.names.String()
	if b.names.Cap()-len(names) > len(names)/8 {
		names = strings.Clone(names)
	}
	m := &Matcher{
		names:   names,
		entries: trim(b.entries),
		slots:   b.slots,
		mask:    b.mask,
		seed:    b.seed,
		filter:  newFilter(len(b.entries) - 1),
		rules:   trim(b.rules),
		files:   b.files,
		apps:    b.apps,
	}
	for i := 1; i < len(m.entries); i++ {
		e := &m.entries[i]
		m.filter.add(maphash.String(m.seed, m.names[e.off:e.off+uint32(e.n)]))
	}
	if len(b.patterns) > 0 {
		m.patterns = b.patterns
	}
	return m
}

// trim returns s, or a copy of it without the spare capacity when that is
// more than an eighth of its length.
func trim[T any](s []T) []T {
	if cap(s)-len(s) > len(s)/8 {
		return slices.Clone(s)
	}
	return s
}

// filter is a blocked Bloom filter over the hashes of the matcher's names.
// Most suffixes of most queries are no rule's name; the filter, about ten
// bits a name and so small enough to stay in the processor's cache, rules
// out nearly all of them with one cache line, where the table, many times
// larger, would cost a miss to memory. Each block of eight words (one
// cache line) holds three bits of every hash that falls in it.
type filter []uint64

// filterBitsPerName sets the size of the filter: with ten bits a name, about
// two in a hundred absent names get through to the table.
const filterBitsPerName = 10

func newFilter(names int) filter {
	blocks := max(1, (names*filterBitsPerName+511)/512)
	return make(filter, 8*blocks)
}

// block returns the block of h: the high 32 bits scaled to the number of
// blocks; the three bits within it come from the low 27 bits.
func (f filter) block(h uint64) filter {
	i := (h >> 32) * uint64(len(f)/8) >> 32
	return f[8*i : 8*i+8 : 8*i+8]
}

func (f filter) add(h uint64) {
	b := f.block(h)
	for k := 0; k < 3; k++ {
		bit := h >> (9 * k) & 511
		b[bit>>6] |= 1 << (bit & 63)
	}
}

// has reports whether h may have been added; false is certain.
func (f filter) has(h uint64) bool {
	b := f.block(h)
	for k := 0; k < 3; k++ {
		bit := h >> (9 * k) & 511
		if b[bit>>6]&(1<<(bit&63)) == 0 {
			return false
		}
	}
	return true
}
