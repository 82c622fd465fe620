#!/bin/sh
# Runs every fuzz target of the module (every func FuzzXxx in a _test.go
# file), one after the other, each for FUZZTIME (default 20s) with
# FUZZPARALLEL workers (default 2: the machine is shared). A target that
# fails stops the run; its input is written to the package's
# testdata/fuzz/FuzzXxx/, where plain `go test` replays it from then on.
#
#   make fuzz                      # every target, 20s each
#   FUZZTIME=5m make fuzz          # longer
#   FUZZ=FuzzServePacket make fuzz # only the targets matching a regexp
set -eu
cd "$(dirname "$0")/.."
GO=${GO:-go}
FUZZTIME=${FUZZTIME:-20s}
FUZZPARALLEL=${FUZZPARALLEL:-2}
FUZZ=${FUZZ:-.}
for dir in $(grep -l '^func Fuzz' $(git ls-files '*_test.go') | xargs -n1 dirname | sort -u); do
  for name in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go | sed 's/^func //' | grep -E "$FUZZ" || true); do
    echo "== ./$dir $name ($FUZZTIME)"
    # Minimizing a new input may take up to a minute by default, during
    # which nothing is fuzzed; short runs keep it short.
    "$GO" test -run '^$' -fuzz "^$name\$" -fuzztime "$FUZZTIME" -fuzzminimizetime 1s \
      -parallel "$FUZZPARALLEL" "./$dir"
  done
done
