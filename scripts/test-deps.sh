#!/bin/sh
# Installs the tools the tests need when they are missing: dig
# (bind9-dnsutils), promtool (Debian's prometheus package), which checks
# and unit-tests the alert rules and the dashboard's queries, nft
# (nftables), which checks the example firewall ruleset (in a namespace of
# its own: nothing is applied to the machine), and systemd-analyze
# (systemd), which checks the systemd unit offline, and kdig
# (knot-dnsutils), the independent DoT and DoH client of the encrypted
# listeners' tests, fstrm_capture (fstrm-bin) with dnstap-read
# (bind9-dnsutils), the dnstap collector and decoder of the dnstap tests,
# and gcc with OpenSSL's headers (gcc, libc6-dev, libssl-dev), which build
# ISC's genreport for the conformance test (cmd/conformance).
# Uses apt-get when it can (root, Debian/Ubuntu); otherwise says what to install.
set -eu
missing=""
# dig and dnstap-read are both in bind9-dnsutils.
{ command -v dig >/dev/null 2>&1 && command -v dnstap-read >/dev/null 2>&1; } || missing="$missing bind9-dnsutils"
command -v fstrm_capture >/dev/null 2>&1 || missing="$missing fstrm-bin"
command -v promtool >/dev/null 2>&1 || missing="$missing prometheus"
command -v nft >/dev/null 2>&1 || [ -x /usr/sbin/nft ] || missing="$missing nftables"
command -v systemd-analyze >/dev/null 2>&1 || missing="$missing systemd"
command -v kdig >/dev/null 2>&1 || missing="$missing knot-dnsutils"
command -v gcc >/dev/null 2>&1 || missing="$missing gcc libc6-dev"
[ -f /usr/include/openssl/ssl.h ] || missing="$missing libssl-dev"
[ -z "$missing" ] && exit 0
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "installing:$missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  # shellcheck disable=SC2086
  apt-get install -y -qq --no-install-recommends $missing >/dev/null
  exit 0
fi
echo "the tests need:$missing — install with: sudo apt-get install$missing" >&2
exit 1
