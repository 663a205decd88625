#!/usr/bin/env bash
# The one test command (README.md; .ci/run calls exactly this). On a fresh
# machine it installs what the tests need, then: gofmt, go vet, the whole
# suite with -race (unit + e2e against the real binary), and a short run of
# every fuzz target.
set -euo pipefail
cd "$(dirname "$0")/.."

FUZZTIME=${FUZZTIME:-8s}

echo "== dependencies"
bash .ci/install-deps.sh

echo "== gofmt"
bad=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$bad" ]; then
  echo "gofmt would change:"; echo "$bad"; exit 1
fi

echo "== go vet"
go vet ./...

echo "== go test -race (the e2e suite also builds weft itself with -race)"
WEFT_E2E_RACE=1 go test -race -count=1 -timeout 25m ./...

echo "== fuzz (each target ${FUZZTIME})"
# Every Fuzz* function beside a decoder or config parser gets a short run;
# the seed corpora under testdata/fuzz run in every `go test` above too.
# fuzz_once PKG FN: one short fuzzing run; the log is in /tmp/weft-fuzz.log.
fuzz_once() {
  go test "$1" -run '^$' -fuzz "^$2\$" -fuzztime "$FUZZTIME" >/tmp/weft-fuzz.log 2>&1
}

# toolchain_quirk PKG FN: whether the failed run in /tmp/weft-fuzz.log is
# one of two known faults of Go's fuzzer rather than a finding:
#   - a bare "context deadline exceeded" when -fuzztime runs out while a
#     worker is busy, with no failing input written;
#   - "fuzzing process hung or terminated unexpectedly while minimizing:
#     EOF" (golang/go#52569): the worker dies while shrinking an input that
#     merely added coverage. Its input is written as if it had failed, so
#     it is replayed: if it passes, the run is the toolchain's fault and
#     the input is removed; if it fails, it is a finding.
toolchain_quirk() {
  local log=/tmp/weft-fuzz.log input
  if grep -q 'context deadline exceeded' "$log" && ! grep -q 'Failing input written' "$log"; then
    echo "   (fuzzer stopped on its own deadline; running it again)"
    return 0
  fi
  grep -q 'hung or terminated unexpectedly while minimizing' "$log" || return 1
  input=$(sed -n 's/.*Failing input written to \(testdata\/fuzz\/[^ ]*\).*/\1/p' "$log" | head -n 1)
  [[ -n $input && -f $1/$input ]] || return 1
  if ! go test "$1" -count=1 -run "^$2\$/^$(basename "$input")\$" >/tmp/weft-fuzz-replay.log 2>&1; then
    cat /tmp/weft-fuzz-replay.log
    return 1
  fi
  echo "   (fuzzer worker died while minimizing; its input $input passes on replay; running again)"
  rm -f "$1/$input"
  return 0
}

grep -rl --include='*_test.go' '^func Fuzz' . | sort | while read -r f; do
  pkg="./$(dirname "${f#./}")"
  for fn in $(grep -o '^func Fuzz[A-Za-z0-9_]*' "$f" | sed 's/^func //'); do
    echo "-- $pkg $fn"
    # A real crash writes its input and fails at once; a toolchain fault
    # (above) is tried once more.
    if ! fuzz_once "$pkg" "$fn"; then
      if toolchain_quirk "$pkg" "$fn"; then
        fuzz_once "$pkg" "$fn" || { cat /tmp/weft-fuzz.log; exit 1; }
      else
        cat /tmp/weft-fuzz.log
        exit 1
      fi
    fi
    tail -n 1 /tmp/weft-fuzz.log
  done
done

echo "== all tests passed"
