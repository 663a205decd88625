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
grep -rl --include='*_test.go' '^func Fuzz' . | sort | while read -r f; do
  pkg="./$(dirname "${f#./}")"
  for fn in $(grep -o '^func Fuzz[A-Za-z0-9_]*' "$f" | sed 's/^func //'); do
    echo "-- $pkg $fn"
    # Go's fuzzer sometimes ends a run with a bare "context deadline
    # exceeded" when -fuzztime runs out while a worker is busy (no failing
    # input is written): that is the toolchain, not a finding, so such a run
    # is tried once more. A real crash writes its input and fails at once.
    if ! go test "$pkg" -run '^$' -fuzz "^${fn}\$" -fuzztime "$FUZZTIME" >/tmp/weft-fuzz.log 2>&1; then
      if grep -q 'context deadline exceeded' /tmp/weft-fuzz.log && ! grep -q 'Failing input written' /tmp/weft-fuzz.log; then
        echo "   (fuzzer stopped on its own deadline; running it again)"
        go test "$pkg" -run '^$' -fuzz "^${fn}\$" -fuzztime "$FUZZTIME" >/tmp/weft-fuzz.log 2>&1 || { cat /tmp/weft-fuzz.log; exit 1; }
      else
        cat /tmp/weft-fuzz.log
        exit 1
      fi
    fi
    tail -n 1 /tmp/weft-fuzz.log
  done
done

echo "== all tests passed"
