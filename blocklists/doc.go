// Package blocklists owns what AppFence knows about apps: app-definition
// files ([[app]] tables), the external list formats they import (domains,
// hosts, adblock), the built-in catalog embedded in the binary, and the
// compiled Matcher that finds the best rule for a query name.
//
// Names are compared in canonical form (see internal/dnsname). A rule in
// domains covers the name and every name under it, exact only the name,
// patterns have '*' within labels; allow rules are exceptions. The best rule
// is the one matching the longest part of the name; at equal length an allow
// rule wins.
//
// It owns the app definitions and the compiled matchers. It may import
// internal/dnsname, internal/iptable and internal/tomlpos; it knows nothing
// of groups, policies or DNS serving.
package blocklists
