package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"text/tabwriter"

	"github.com/miekg/dns"

	"github.com/appfence/appfence/internal/dnswire"
	"github.com/appfence/appfence/policy"
)

func explain(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("explain", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "configuration file (default: the built-in configuration)")
	client := fs.String("client", "", "the client's IP address (required)")
	asJSON := fs.Bool("json", false, "print JSON lines")
	typeFlag := fs.String("type", "", "the query type (default A; a last argument that is a type name also sets it)")
	clientID := fs.String("client-id", "", "the ClientID the device sends (DoH path or DoT/DoQ SNI label), to place it as the server would")
	cert := fs.String("cert", "", "a name of the device's verified client certificate (DNS SAN, CN or sha256:HEX)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: appfence explain [-config FILE] [-json] [-type TYPE] [-client-id ID] [-cert NAME] -client IP NAME... [TYPE]\n       (no NAME: names are read from standard input, one per line)")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	addr, err := netip.ParseAddr(*client)
	if err != nil {
		fmt.Fprintf(stderr, "appfence explain: -client %q is not an IP address\n", *client)
		return 2
	}
	names := fs.Args()
	qtype, err := dnswire.ParseType(*typeFlag)
	if err != nil {
		fmt.Fprintf(stderr, "appfence explain: -%v\n", err)
		return 2
	}
	if n := len(names); *typeFlag == "" && (n > 1 || n == 1 && !strings.Contains(names[0], ".")) {
		if t, ok := dns.StringToType[strings.ToUpper(names[n-1])]; ok && !strings.Contains(names[n-1], ".") {
			qtype, names = t, names[:n-1]
		}
	}
	if len(names) == 0 {
		sc := bufio.NewScanner(stdin)
		for sc.Scan() {
			if line := strings.TrimSpace(sc.Text()); line != "" && !strings.HasPrefix(line, "#") {
				names = append(names, line)
			}
		}
		if err := sc.Err(); err != nil {
			fmt.Fprintf(stderr, "appfence explain: reading names: %v\n", err)
			return 1
		}
	}
	if len(names) == 0 {
		fs.Usage()
		return 2
	}
	p, err := loadPolicy(*cfgPath)
	if err != nil {
		fmt.Fprintf(stderr, "appfence: %v\n", err)
		return 1
	}
	id := identity(*clientID, *cert)
	if *asJSON {
		enc := json.NewEncoder(stdout)
		for _, n := range names {
			enc.Encode(p.ExplainFor(addr, id, n, qtype))
		}
		return 0
	}
	tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "NAME\tTYPE\tGROUP\tACTION\tAPP\tRULE\tORIGIN\tANSWER\n")
	for _, n := range names {
		e := p.ExplainFor(addr, id, n, qtype)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Name, e.Type, e.Group, e.Action,
			dash(e.App), dash(rule(e)), dash(e.Origin), e.Answer)
	}
	tw.Flush()
	return 0
}

func rule(e policy.Explanation) string {
	if e.Rule == "" {
		return ""
	}
	if e.Via != "" {
		return e.Rule + " (" + e.Kind + ", via " + e.Via + ")"
	}
	return e.Rule + " (" + e.Kind + ")"
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// identity returns the identity the -client-id and -cert flags describe,
// or nil when both are empty.
func identity(clientID, cert string) *policy.Identity {
	if clientID == "" && cert == "" {
		return nil
	}
	id := &policy.Identity{ClientID: strings.ToLower(clientID)}
	if cert != "" {
		id.CertNames = []string{strings.ToLower(cert)}
	}
	return id
}
