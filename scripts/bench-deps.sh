#!/bin/sh
# Installs what `make bench` needs when it is missing: dnsperf and Unbound
# from Debian's packages (apt-get, as root), and CoreDNS 1.12.1 built with
# `go install` into the folder given as $1, outside the repository (it is
# never vendored). Prints the path of the coredns binary.
set -eu
tools=${1:?usage: bench-deps.sh DIR}
missing=""
command -v dnsperf >/dev/null 2>&1 || missing="$missing dnsperf"
command -v unbound >/dev/null 2>&1 || [ -x /usr/sbin/unbound ] || missing="$missing unbound"
command -v taskset >/dev/null 2>&1 || missing="$missing util-linux"
if [ -n "$missing" ]; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "installing:$missing" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
  else
    echo "the bench needs:$missing — install with: sudo apt-get install$missing" >&2
    exit 1
  fi
fi
if [ ! -x "$tools/coredns" ]; then
  echo "building CoreDNS 1.12.1 into $tools (a few minutes, once)" >&2
  mkdir -p "$tools"
  (cd / && GOBIN="$tools" GOFLAGS= ${GO:-go} install github.com/coredns/coredns@v1.12.1) >&2
fi
echo "$tools/coredns"
