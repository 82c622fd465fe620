package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/xml"
	"flag"
	"fmt"
	"io"
	"net"
	"regexp"
	"strings"

	"github.com/appfence/appfence/config"
	"github.com/appfence/appfence/policy"
)

// profile prints an Apple configuration profile (.mobileconfig) with a
// com.apple.dnsSettings.managed payload for one device, or with -android
// the Private DNS hostname.
func profile(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("profile", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "configuration file (default: the built-in configuration)")
	clientID := fs.String("client-id", "", "the device's ClientID (required)")
	protocol := fs.String("protocol", "https", "https (DoH ServerURL) or tls (DoT ServerName)")
	certUUID := fs.String("cert-uuid", "", "PayloadUUID of the device's certificate payload (iOS 16+), if any")
	android := fs.Bool("android", false, "print the Android Private DNS hostname instead")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: appfence profile [-config FILE] -client-id ID [-protocol https|tls] [-cert-uuid UUID] [-android]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	id := strings.ToLower(*clientID)
	if !config.ClientIDRE.MatchString(id) {
		fmt.Fprintf(stderr, "appfence profile: -client-id %q: a ClientID is 1 to 63 of a-z, 0-9 and '-'\n", *clientID)
		return 2
	}
	if *certUUID != "" && !uuidRE.MatchString(*certUUID) {
		fmt.Fprintf(stderr, "appfence profile: -cert-uuid %q is not a UUID\n", *certUUID)
		return 2
	}
	cfg, err := policy.LoadConfig(*cfgPath)
	if err != nil {
		fmt.Fprintf(stderr, "appfence profile: %v\n", err)
		return 1
	}
	t := cfg.Server.TLS
	if t.ServerName == "" {
		fmt.Fprintln(stderr, "appfence profile: server.tls.server_name is not set: devices need the name the certificate is for")
		return 1
	}
	host := id + "." + t.ServerName
	if *android {
		if len(t.DoTListen) == 0 {
			fmt.Fprintln(stderr, "appfence profile: Android Private DNS is DoT on port 853, and server.tls.dot_listen is empty")
			return 1
		}
		fmt.Fprintln(stdout, host)
		return 0
	}
	var settings [][2]string
	switch *protocol {
	case "https":
		if len(t.DoHListen) == 0 {
			fmt.Fprintln(stderr, "appfence profile: -protocol https needs server.tls.doh_listen")
			return 1
		}
		u := "https://" + t.ServerName
		if _, port, _ := net.SplitHostPort(t.DoHListen[0]); port != "443" {
			u += ":" + port
		}
		settings = [][2]string{{"DNSProtocol", "HTTPS"}, {"ServerURL", u + "/dns-query/" + id}}
	case "tls":
		if len(t.DoTListen) == 0 {
			fmt.Fprintln(stderr, "appfence profile: -protocol tls needs server.tls.dot_listen")
			return 1
		}
		settings = [][2]string{{"DNSProtocol", "TLS"}, {"ServerName", host}}
	default:
		fmt.Fprintf(stderr, "appfence profile: -protocol %q: https or tls\n", *protocol)
		return 2
	}
	if *certUUID != "" {
		settings = append(settings, [2]string{"PayloadCertificateUUID", *certUUID})
	}
	stdout.Write(mobileconfig(t.ServerName, id, settings))
	return 0
}

var uuidRE = regexp.MustCompile(`^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$`)

// stableUUID derives a UUID from its parts, so that the profile of a
// device is the same each time it is made (an MDM replaces it in place).
func stableUUID(parts ...string) string {
	sum := sha256.Sum256([]byte("appfence\x00" + strings.Join(parts, "\x00")))
	b := sum[:16]
	b[6] = b[6]&0x0F | 0x50 // version 5 (name-based)
	b[8] = b[8]&0x3F | 0x80 // RFC 4122 variant
	return fmt.Sprintf("%X-%X-%X-%X-%X", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// mobileconfig returns the property list of a profile with one
// com.apple.dnsSettings.managed payload.
func mobileconfig(serverName, id string, settings [][2]string) []byte {
	var b bytes.Buffer
	str := func(indent, key, val string) {
		fmt.Fprintf(&b, "%s<key>%s</key>\n%s<string>%s</string>\n", indent, esc(key), indent, esc(val))
	}
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
	<key>PayloadContent</key>
	<array>
		<dict>
			<key>DNSSettings</key>
			<dict>
`)
	for _, kv := range settings {
		str("\t\t\t\t", kv[0], kv[1])
	}
	b.WriteString("\t\t\t</dict>\n")
	payload := stableUUID(serverName, id, "dns")
	str("\t\t\t", "PayloadDisplayName", "AppFence DNS")
	str("\t\t\t", "PayloadIdentifier", "com.apple.dnsSettings.managed."+payload)
	str("\t\t\t", "PayloadType", "com.apple.dnsSettings.managed")
	str("\t\t\t", "PayloadUUID", payload)
	b.WriteString("\t\t\t<key>PayloadVersion</key>\n\t\t\t<integer>1</integer>\n\t\t</dict>\n\t</array>\n")
	str("\t", "PayloadDisplayName", "AppFence DNS ("+id+")")
	str("\t", "PayloadIdentifier", "appfence."+serverName+"."+id)
	str("\t", "PayloadType", "Configuration")
	str("\t", "PayloadUUID", stableUUID(serverName, id, "profile"))
	b.WriteString("\t<key>PayloadVersion</key>\n\t<integer>1</integer>\n</dict>\n</plist>\n")
	return b.Bytes()
}

func esc(s string) string {
	var b strings.Builder
	xml.EscapeText(&b, []byte(s))
	return b.String()
}
