#!/bin/sh
# Runs ISC's DNS compliance tests against AppFence on loopback
# (cmd/conformance): builds genreport from ../shared/tools/genreport into
# TOOLS (outside the repository's tracked files), then runs it against the
# AppFence binary given, forwarding to an in-process test zone.
#   scripts/conformance.sh BIN TOOLS
set -eu
bin=${1:-bin/appfence}
tools=${2:-$HOME/.cache/appfence-conformance}
src=$(cd "$(dirname "$0")/.." && pwd)/../shared/tools/genreport
if [ ! -x "$tools/genreport" ] || [ "$src/genreport.c" -nt "$tools/genreport" ]; then
  "$src/build.sh" "$tools" >/dev/null
fi
exec ${GO:-go} run ./cmd/conformance -appfence "$bin" -genreport "$tools/genreport"
