#!/usr/bin/env bash
# Runs every fuzz target of the module for a bounded number of executions,
# one target per go test run (-fuzz takes one target at a time). Targets are
# discovered, so a new Fuzz function is included without editing this file:
# grep finds the packages with one in a test file, and go test -list names
# those that build here (build tags and GOARCH applied).
#
#   FUZZ_EXECS  executions per target after its seed corpus (default 2000)
#   GO          the go command (default go)
#
# A failing input is written to the package's testdata/fuzz/<target>/ by go
# test, as usual; every target runs, and the script fails if any did.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
execs=${FUZZ_EXECS:-2000}

# Directories go ignores (names starting with . or _, testdata) are left out.
pkgs=$(grep -rl --include='*_test.go' --exclude-dir='.?*' --exclude-dir='_*' --exclude-dir=testdata \
	'^func Fuzz' . | xargs -r -n1 dirname | sort -u)
if [ -z "$pkgs" ]; then
	echo "fuzz: no fuzz targets found" >&2
	exit 1
fi

start=$SECONDS
n=0
failed=()
for pkg in $pkgs; do
	if ! list=$("$GO" test -list '^Fuzz' "$pkg"); then
		failed+=("$pkg (go test -list)") # a package that does not build is a failure, not a skip
		continue
	fi
	targets=$(printf '%s\n' "$list" | grep '^Fuzz' || true)
	for target in $targets; do
		n=$((n + 1))
		echo "fuzz: $target ($pkg, ${execs}x)"
		if ! "$GO" test -run '^$' -fuzz "^${target}\$" -fuzztime "${execs}x" "$pkg"; then
			failed+=("$target ($pkg)")
		fi
	done
done
echo "fuzz: $n targets, ${execs} executions each, $((SECONDS - start))s"
if [ ${#failed[@]} -gt 0 ]; then
	printf 'fuzz: FAIL %s\n' "${failed[@]}" >&2
	exit 1
fi
