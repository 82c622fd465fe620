package deploy

import (
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/appfence/appfence/blocklists"
	"github.com/appfence/appfence/internal/iptable"
	"github.com/appfence/appfence/policy"
)

const nftRuleset = "nftables/appfence.nft"

// TestNftablesRulesetChecks has nft check the example ruleset (nft -c: the
// kernel validates it and nothing is applied) inside a user and network
// namespace of its own, so that the test needs no privileges and can never
// touch the machine's real tables.
func TestNftablesRulesetChecks(t *testing.T) {
	nft, err := exec.LookPath("nft")
	if err != nil {
		nft, err = exec.LookPath("/usr/sbin/nft") // not in the PATH of users other than root
	}
	if err != nil {
		t.Fatal("nft is not installed: run `make test-deps` (installs Debian's nftables package)")
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Fatal("unshare (util-linux) is not installed")
	}
	out, err := exec.Command(unshare, "--user", "--map-root-user", "--net", nft, "-c", "-f", nftRuleset).CombinedOutput()
	if err != nil {
		t.Fatalf("nft -c -f %s: %v\n%s", nftRuleset, err, out)
	}
}

// TestNftablesSetsMatchCatalog: the ruleset's sets of DoH resolver
// addresses are the ip_ranges of the catalog's encrypted-dns app, so that
// the firewall and the answer inspection know the same resolvers.
func TestNftablesSetsMatchCatalog(t *testing.T) {
	text, err := os.ReadFile(nftRuleset)
	if err != nil {
		t.Fatal(err)
	}
	set, err := blocklists.Load(blocklists.Options{})
	if err != nil {
		t.Fatal(err)
	}
	app := set.App(policy.CanaryApp)
	var want []string
	for _, p := range app.IPRanges {
		want = append(want, p.String())
	}
	var got []string
	for _, name := range []string{"doh4", "doh6"} {
		m := regexp.MustCompile(`(?s)set ` + name + ` \{.*?elements = \{(.*?)\}`).FindSubmatch(text)
		if m == nil {
			t.Fatalf("%s: no set %s with elements", nftRuleset, name)
		}
		for _, e := range strings.Split(string(m[1]), ",") {
			p, err := iptable.ParsePrefix(strings.TrimSpace(e))
			if err != nil {
				t.Fatalf("%s: set %s: %v", nftRuleset, name, err)
			}
			if p.Addr().Is4() != (name == "doh4") {
				t.Errorf("%s: %s in set %s", nftRuleset, p, name)
			}
			got = append(got, p.String())
		}
	}
	cmp := func(a, b string) int {
		return netip.MustParsePrefix(a).Addr().Compare(netip.MustParsePrefix(b).Addr())
	}
	slices.SortFunc(got, cmp)
	slices.SortFunc(want, cmp)
	if !slices.Equal(got, want) {
		t.Errorf("%s: the doh4 and doh6 sets (%d addresses) are not the ip_ranges of %s (%d); regenerate them (docs/bypass.md)",
			nftRuleset, len(got), policy.CanaryApp, len(want))
	}
}
