#!/usr/bin/env bash
# `make pulumi`: make a Pulumi engine available to callfleet.
#  - a `pulumi` already on PATH is used as it is (the official distribution ships the
#    language host and the Python shims beside it);
#  - otherwise the engine is built with the machine's Go from the wrapper module beside
#    this script (pinned in go.mod/go.sum) into TOOLS_BIN, with callfleet's own shims for
#    Python dynamic providers and policy packs. Go's module and build caches are reused,
#    so a second run only checks (or relinks) and takes seconds;
#  - without Go it prints how to install Pulumi and exits 3.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
bin="${TOOLS_BIN:-$root/.tools/bin}"
# The version the wrapper module pins (kept in one place: go.mod).
version="$(sed -nE 's#^(require)?[[:space:]]*github\.com/pulumi/pulumi/pkg/v3 (v[^ ]+).*#\2#p' "$here/go.mod" | head -1)"
install_url="https://www.pulumi.com/docs/install/"

say() { printf 'make pulumi: %s\n' "$*"; }

on_path="$(PATH="$(printf '%s' "$PATH" | tr ':' '\n' | grep -vxF "$bin" | paste -sd: -)" command -v pulumi || true)"
if [ -n "$on_path" ]; then
    say "using the pulumi on PATH: $on_path ($("$on_path" version 2>/dev/null || echo 'version unknown')); nothing built"
    exit 0
fi

if ! command -v go >/dev/null 2>&1; then
    cat >&2 <<EOF
make pulumi: the Pulumi engine (the \`pulumi\` CLI) is not installed, and there is no Go
toolchain to build it with. Install Pulumi the official way, then run make again:
    curl -fsSL https://get.pulumi.com | sh        # installs into ~/.pulumi/bin
    export PATH="\$HOME/.pulumi/bin:\$PATH"
or see $install_url (Homebrew, apt/yum repositories, Windows installers).
Or install Go (https://go.dev/doc/install) and run \`make pulumi\` to build $version here.
EOF
    exit 3
fi

stamp="$bin/.pulumi-build"
# What the build depends on: the pinned modules, the shims and this script.
want="$(cat "$here/go.mod" "$here/go.sum" "$here"/shims/* "$0" | sha256sum | cut -d' ' -f1) $(go env GOVERSION)"
if [ -x "$bin/pulumi" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    say "pulumi $version already built in $bin (up to date; delete $stamp to rebuild)"
    exit 0
fi

mkdir -p "$bin"
if [ "${1:-}" = "--background" ]; then
    # `make test`: build at the lowest CPU priority while the lab tests run (they wait on
    # calls and bakes far more than they compute); the engine tests, which come last, wait
    # for it (tests/unit/provision: .tools/build.pid, .tools/build.log, .tools/build.rc).
    tools="$(dirname "$bin")"
    rm -f "$tools/build.rc"
    ( nice -n 19 "$0" >"$tools/build.log" 2>&1; echo $? >"$tools/build.rc" ) &
    echo $! >"$tools/build.pid"
    say "building pulumi $version in the background (log $tools/build.log)"
    exit 0
fi
start=$(date +%s)
say "building pulumi $version (github.com/pulumi/pulumi/pkg/v3/cmd/pulumi) with $(go env GOVERSION) into $bin"
say "module cache $(go env GOMODCACHE), build cache $(go env GOCACHE) (the first build downloads and compiles for minutes; later ones reuse them)"
# GOTOOLCHAIN=local: never download another Go; GOFLAGS -p keeps the build to two jobs.
( cd "$here" && GOTOOLCHAIN=local GOFLAGS="${GOFLAGS:-} -p=${PULUMI_BUILD_JOBS:-2} -buildvcs=false -mod=readonly" \
    go build -trimpath \
      -ldflags "-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=$version" \
      -o "$bin/pulumi" github.com/pulumi/pulumi/pkg/v3/cmd/pulumi )
install -m 0755 "$here"/shims/* "$bin/"
printf '%s\n' "$want" >"$stamp"
say "built $bin/pulumi ($("$bin/pulumi" version)) and the shims $(cd "$here/shims" && echo *) in $(( $(date +%s) - start ))s"
say "not built: the Python language host (pulumi-language-python): its module is not served by the Go module proxy; callfleet runs its program inline through the Automation API instead (docs/PROVISIONING.md)"
