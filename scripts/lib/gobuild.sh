# shellcheck shell=bash
# What the scripts that build Go programs from the module proxy share: scripts/k8s-control-plane,
# k8s-node, kubectl, cni-tools, helm and metallb each source it, define say() and die(), and
# build into a directory of ${SART_CACHE_DIR:-$HOME/.cache/sart} named after the versions it
# pins and the Go toolchain (a new version or toolchain selects a new directory, hence a build).

GO_PARALLEL=${SART_GO_PARALLEL:-2}
SART_CACHE="${SART_CACHE_DIR:-$HOME/.cache/sart}"

need_go() {  # WHAT: Go must be there; sets GO_VERSION (part of every cache directory's name)
    command -v go >/dev/null || die "Go is needed to build $1 (https://go.dev/doc/install)"
    GO_VERSION="$(go env GOVERSION)"
}

since() {  # time since a `date +%s.%N` stamp, as "13m47s" or "0.4s"
    python3 -c 'import sys, time; m, s = divmod(time.time() - float(sys.argv[1]), 60)
print(f"{int(m)}m{s:02.0f}s" if m else f"{s:.1f}s")' "$1"
}

lock_cache() {  # CACHE: one build at a time per directory (setup and a test run may race on
    # a fresh machine); file descriptor 9 holds the lock until build_finished
    mkdir -p "$1"
    exec 9>"$1/.lock"
    if ! flock -n 9; then
        say "another build of $1 is running; waiting for it"
        flock 9
    fi
}

start_work() {  # WORK: a temporary directory, removed on exit; the Go build environment
    WORK="$(mktemp -d)"
    # shellcheck disable=SC2064  # expand now: WORK changes with the next build
    trap "rm -rf '$WORK'" EXIT
    export CGO_ENABLED=0 GOFLAGS="-trimpath -buildvcs=false" GOTOOLCHAIN=local
}

build_finished() {  # release the lock, remove WORK
    exec 9>&-
    rm -rf "$WORK"
    trap - EXIT
}

quiet_go_get() {  # LOG ARGS...: go get, without its hundreds of "go: added" lines unless it fails
    local log="$1"; shift
    if ! go get "$@" >"$log" 2>&1; then
        grep -v '^go: added ' "$log" | tail -n 40 >&2
        die "go get $* failed"
    fi
}

all_built() {  # DIR STAMP NAMES...: whether DIR holds every one of NAMES and the build's STAMP
    local dir="$1" stamp="$2" name; shift 2
    [ -f "$stamp" ] || return 1
    for name in "$@"; do [ -x "$dir/$name" ] || return 1; done
}

k8s_go_mod() {  # K8S_VERSION: the path of k8s.io/kubernetes's go.mod at that tag (downloaded)
    (cd / && go mod download -json "k8s.io/kubernetes@$1") \
        | python3 -c 'import json, sys; print(json.load(sys.stdin)["GoMod"])'
}

k8s_module() {  # NAME K8S_VERSION GO_MOD: make the current directory a module that builds
    # k8s.io/kubernetes commands. The tag requires its staging modules at v0.0.0 and maps them
    # to ./staging with replace directives, which only apply in the main module: each is
    # replaced by its published tag here (the list changes between minors, so it is read from
    # the tag's own go.mod, GO_MOD), and its godebug settings are kept.
    local name="$1" version="$2" go_mod="$3" minor patch module setting
    minor="$(cut -d. -f2 <<<"$version")"
    patch="$(cut -d. -f3 <<<"$version")"
    go mod init "local.invalid/$name" >/dev/null 2>&1
    while read -r module; do
        go mod edit -replace "${module}=${module}@v0.${minor}.${patch}"
    done < <(awk '$1 ~ /^k8s\.io\// && $2 == "v0.0.0" {print $1}' "$go_mod" | sort -u)
    while read -r setting; do
        go mod edit -godebug="$setting"
    done < <(sed -n 's/^godebug[[:space:]]\+\([^ ]\+\)$/\1/p' "$go_mod")
}

k8s_ldflags() {  # K8S_VERSION: what a Kubernetes command's --version says, as go build -ldflags
    local v=k8s.io/component-base/version minor
    minor="$(cut -d. -f2 <<<"$1")"
    echo "-s -w -X $v.gitVersion=$1 -X $v.gitMajor=1 -X $v.gitMinor=$minor -X $v.gitTreeState=clean"
}

build_tool() {  # NAME BIN PACKAGE@VERSION LDFLAGS [PREPARE]: build one command into BIN once.
    # A throw-away module NAME requires it as a tool; PREPARE, when given, runs in that module
    # first (k8s_module's replaces, for instance).
    local name="$1" bin="$2" tool="$3" ldflags="$4" prepare="${5:-}"
    [ -x "$bin" ] && return 0
    local start; start=$(date +%s.%N)
    lock_cache "$(dirname "$bin")"
    if [ -x "$bin" ]; then exec 9>&-; return 0; fi
    say "building $tool with $GO_VERSION into $(dirname "$bin") (minutes when cold)"
    start_work
    (
        cd "$WORK"
        if [ -n "$prepare" ]; then "$prepare"; else go mod init "local.invalid/$name" >/dev/null 2>&1; fi
        quiet_go_get "$WORK/get.log" -tool "$tool"
        go build -p "$GO_PARALLEL" -o "$bin.partial" -ldflags "$ldflags" "${tool%@*}"
    )
    mv "$bin.partial" "$bin"
    build_finished
    say "built in $(since "$start"): $bin"
}
