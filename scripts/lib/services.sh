# shellcheck shell=bash
#
# scripts/lib/services.sh - helpers shared by scripts/test.sh and scripts/demo.sh.
#
# Source this file (do not execute it):
#
#     . "$repo/scripts/lib/services.sh"
#
# Functions:
#   bfs_ensure_packages        install missing Debian packages (apt-get, needs root)
#   bfs_ensure_rust            fail clearly when cargo is not available
#   bfs_ensure_s3s_fs          cargo-install s3s-fs (S3 test server) when missing
#   bfs_start_clamd WORKDIR    start a private clamd (own socket, own database copy)
#   bfs_start_s3 WORKDIR BUCKET
#                              start a private s3s-fs on a free 127.0.0.1 port
#   bfs_stop_pid PID [SECS]    stop a process we started: TERM, bounded wait, KILL
#   bfs_clamd_ping SOCKET      PING a clamd unix socket, succeed on PONG
#   bfs_clamd_instream SOCKET FILE
#                              scan FILE with a raw INSTREAM request, print the reply
#   bfs_s3_curl ARGS...        curl with SigV4 credentials for the private s3s-fs
#   bfs_free_port              print a currently free TCP port on 127.0.0.1
#
# Everything listens on 127.0.0.1 or on unix sockets inside WORKDIR; no fixed
# ports are used.  Functions report problems on stderr and return non-zero.

# Repository root (two levels above this file) and the directory holding the
# shipped configuration (ClamAV test signatures live in $BFS_CONFIG_DIR/clamav).
BFS_REPO_ROOT=${BFS_REPO_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
BFS_CONFIG_DIR=${BACKUPFS_TEST_CONFIG_DIR:-$BFS_REPO_ROOT/config}

# Versions / package lists.
BFS_S3S_FS_VERSION=0.14.1
BFS_PJDFSTEST_VERSION=0.2.2
BFS_APT_PACKAGES=(
    fuse3 clamav-daemon clamdscan gnupg zstd curl ca-certificates clang libclang-dev
    nettle-dev libssl-dev pkg-config build-essential prometheus time python3
    git rsync sqlite3 attr tar bindfs logrotate poppler-utils
    python3-reportlab python3-docx python3-openpyxl python3-odf python3-cairo
)

bfs_log() {
    printf '[backupfs] %s\n' "$*" >&2
}

bfs_err() {
    printf '[backupfs] ERROR: %s\n' "$*" >&2
}

# Print the last lines of a log file to stderr (used in error paths).
bfs_log_tail() {
    local file=$1 lines=${2:-30}
    if [[ -s $file ]]; then
        printf '[backupfs] ---- last %s lines of %s ----\n' "$lines" "$file" >&2
        tail -n "$lines" "$file" >&2 || true
        printf '[backupfs] ---- end of %s ----\n' "$file" >&2
    else
        printf '[backupfs] (%s is empty or missing)\n' "$file" >&2
    fi
}

# True when PID names a live (non-zombie) process.
bfs_pid_alive() {
    local pid=$1 stat rest
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    [[ -r /proc/$pid/stat ]] || return 1
    # /proc/PID/stat: "pid (comm) STATE ..."; comm may contain spaces.
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
    rest=${stat##*) }
    [[ ${rest:0:1} != Z ]]
}

# bfs_stop_pid PID [TIMEOUT_SECONDS]
# Stops a process this shell started: SIGTERM, wait up to TIMEOUT (default 10 s),
# then SIGKILL.  Reaps it when it is our child.  A missing or empty PID is a no-op.
bfs_stop_pid() {
    local pid=${1:-} timeout=${2:-10} i
    [[ $pid =~ ^[0-9]+$ ]] || return 0
    if bfs_pid_alive "$pid"; then
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < timeout * 10; i++)); do
            bfs_pid_alive "$pid" || break
            sleep 0.1
        done
        if bfs_pid_alive "$pid"; then
            bfs_log "process $pid did not exit ${timeout}s after SIGTERM; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            for ((i = 0; i < 50; i++)); do
                bfs_pid_alive "$pid" || break
                sleep 0.1
            done
        fi
    fi
    # Reap it if it is a child of this shell (ignore "not a child" errors).
    wait "$pid" 2>/dev/null || true
    return 0
}

# Print a TCP port on 127.0.0.1 that is free right now (the kernel picks it).
bfs_free_port() {
    python3 - <<'PY'
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()
PY
}

# ---------------------------------------------------------------------------
# Packages and toolchain
# ---------------------------------------------------------------------------

bfs_pkg_installed() {
    [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" == "install ok installed" ]]
}

# Installs whatever is missing from BFS_APT_PACKAGES.  Does nothing (and needs
# no network) when everything is present.  While installing, service starts by
# maintainer scripts are denied through a temporary /usr/sbin/policy-rc.d (only
# when none exists), so the packages do not launch a system clamd, freshclam
# (which would go to the internet) or a prometheus server behind our back.
# Set BFS_ALLOW_SERVICE_START=1 to skip that.
bfs_ensure_packages() {
    local missing=() pkg created_policy=0 rc=0
    if ! command -v dpkg-query >/dev/null 2>&1; then
        bfs_err "dpkg-query not found: these scripts expect Debian 12 (bookworm)"
        return 1
    fi
    for pkg in "${BFS_APT_PACKAGES[@]}"; do
        bfs_pkg_installed "$pkg" || missing+=("$pkg")
    done
    if ((${#missing[@]} == 0)); then
        return 0
    fi
    bfs_log "installing missing packages: ${missing[*]}"
    if [[ $(id -u) -ne 0 ]]; then
        bfs_err "missing packages (${missing[*]}) and not root; run: sudo apt-get install ${missing[*]}"
        return 1
    fi
    if [[ ${BFS_ALLOW_SERVICE_START:-0} != 1 && ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\n# temporary, created by backupfs scripts/lib/services.sh\nexit 101\n' \
            >/usr/sbin/policy-rc.d
        chmod 0755 /usr/sbin/policy-rc.d
        created_policy=1
    fi
    {
        DEBIAN_FRONTEND=noninteractive apt-get update -q &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
    } || rc=$?
    if ((created_policy)); then
        rm -f /usr/sbin/policy-rc.d
    fi
    if ((rc != 0)); then
        bfs_err "apt-get failed (exit $rc) while installing: ${missing[*]}"
        return "$rc"
    fi
    return 0
}

# Puts ~/.cargo/bin on PATH and checks that cargo works.
bfs_ensure_rust() {
    if [[ -d ${CARGO_HOME:-$HOME/.cargo}/bin && :$PATH: != *:"${CARGO_HOME:-$HOME/.cargo}/bin":* ]]; then
        PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
        export PATH
    fi
    if ! command -v cargo >/dev/null 2>&1 || ! cargo --version >/dev/null 2>&1; then
        bfs_err "cargo (Rust toolchain) not found. Install it, e.g. from https://rustup.rs :"
        bfs_err "    curl --proto '=https' -sSf https://sh.rustup.rs | sh -s -- -y --profile default"
        bfs_err "then open a new shell (or: . \"\$HOME/.cargo/env\") and re-run."
        return 1
    fi
    return 0
}

# bfs_find_cargo_tool NAME: prints the path of NAME, on PATH or in ~/.cargo/bin.
bfs_find_cargo_tool() {
    local p
    if p=$(command -v "$1" 2>/dev/null); then
        printf '%s\n' "$p"
        return 0
    fi
    p=${CARGO_HOME:-$HOME/.cargo}/bin/$1
    if [[ -x $p ]]; then
        printf '%s\n' "$p"
        return 0
    fi
    return 1
}

# bfs_ensure_cargo_tool NAME VERSION [CARGO INSTALL ARGS...]
# Installs crate NAME at VERSION with `cargo install --locked` unless its binary is present.
bfs_ensure_cargo_tool() {
    local name=$1 version=$2 p
    shift 2
    if p=$(bfs_find_cargo_tool "$name"); then
        return 0
    fi
    bfs_ensure_rust || return 1
    bfs_log "installing $name $version with cargo (takes a few minutes)"
    if ! cargo install "$name@$version" --locked "$@"; then
        bfs_err "cargo install $name@$version failed"
        return 1
    fi
    if ! p=$(bfs_find_cargo_tool "$name"); then
        bfs_err "$name was installed but is not on PATH or in ~/.cargo/bin"
        return 1
    fi
    bfs_log "$name installed at $p"
}

# Locate s3s-fs on PATH or in ~/.cargo/bin; prints the path.
bfs_find_s3s_fs() {
    bfs_find_cargo_tool s3s-fs
}

# Installs s3s-fs (the S3 server used by tests and the demo) when it is missing.
bfs_ensure_s3s_fs() {
    bfs_ensure_cargo_tool s3s-fs "$BFS_S3S_FS_VERSION" --features binary
}

# Installs pjdfstest (the POSIX test suite run against the mount) when it is missing.
bfs_ensure_pjdfstest() {
    bfs_ensure_cargo_tool pjdfstest "$BFS_PJDFSTEST_VERSION"
}

# ---------------------------------------------------------------------------
# clamd
# ---------------------------------------------------------------------------

# bfs_clamd_ping SOCKET: succeed when clamd answers PONG within 2 s.
bfs_clamd_ping() {
    python3 - "$1" <<'PY' 2>/dev/null
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(2)
try:
    s.connect(sys.argv[1])
    s.sendall(b"zPING\0")
    reply = b""
    while not reply.endswith(b"\0"):
        chunk = s.recv(64)
        if not chunk:
            break
        reply += chunk
except OSError:
    sys.exit(1)
sys.exit(0 if reply.rstrip(b"\0\n") == b"PONG" else 1)
PY
}

# bfs_clamd_instream SOCKET FILE: scan FILE through a raw INSTREAM request and
# print clamd's reply (e.g. "stream: OK" or "stream: <name> FOUND").
bfs_clamd_instream() {
    python3 - "$1" "$2" <<'PY'
import socket, struct, sys
sock_path, file_path = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(60)
s.connect(sock_path)
s.sendall(b"zINSTREAM\0")
try:
    with open(file_path, "rb") as f:
        while True:
            chunk = f.read(65536)
            if not chunk:
                break
            s.sendall(struct.pack(">I", len(chunk)) + chunk)
    s.sendall(struct.pack(">I", 0))
except (BrokenPipeError, ConnectionResetError):
    # clamd stops reading when StreamMaxLength is exceeded; its reply
    # ("INSTREAM size limit exceeded. ERROR") is still readable.
    pass
reply = b""
try:
    while not reply.endswith(b"\0"):
        chunk = s.recv(4096)
        if not chunk:
            break
        reply += chunk
except ConnectionResetError:
    pass
print(reply.rstrip(b"\0\n").decode("utf-8", "replace"))
PY
}

# bfs_start_clamd WORKDIR
# Starts clamd in the foreground of a background job with a configuration
# written to WORKDIR/clamd.conf, a private database copied from
# $BFS_CONFIG_DIR/clamav, a unix socket WORKDIR/clamd.sock and a TCP socket on
# a free 127.0.0.1 port (set BFS_CLAMD_NO_TCP=1 to omit it).  Waits up to
# BFS_CLAMD_TIMEOUT seconds (default 120) for a PONG. BFS_CLAMD_STREAM_MAX
# (default 64M) and BFS_CLAMD_SCAN_MAX (default 256M) set its size limits.
# Exports BFS_CLAMD_SOCKET, BFS_CLAMD_PID, BFS_CLAMD_CONF, BFS_CLAMD_LOG and,
# with TCP, BFS_CLAMD_TCP=127.0.0.1:PORT; PID also in WORKDIR/clamd.ourpid.
bfs_start_clamd() {
    local workdir=${1:?usage: bfs_start_clamd WORKDIR}
    local clamd_bin dbdir tmpdir sock conf log out port="" n=0 f i timeout start now
    timeout=${BFS_CLAMD_TIMEOUT:-120}
    mkdir -p "$workdir" || return 1
    workdir=$(cd "$workdir" && pwd) || return 1
    if ! clamd_bin=$(command -v clamd 2>/dev/null); then
        if [[ -x /usr/sbin/clamd ]]; then
            clamd_bin=/usr/sbin/clamd
        else
            bfs_err "clamd not found (install the clamav-daemon package)"
            return 1
        fi
    fi
    dbdir=$workdir/clamav-db
    tmpdir=$workdir/clamd-tmp
    sock=$workdir/clamd.sock
    conf=$workdir/clamd.conf
    log=$workdir/clamd.log
    out=$workdir/clamd.out
    # sun_path is 108 bytes including the terminating NUL.
    if ((${#sock} > 100)); then
        bfs_err "clamd socket path too long for a unix socket (${#sock} bytes): $sock"
        return 1
    fi
    if [[ ! -d $BFS_CONFIG_DIR/clamav ]]; then
        bfs_err "signature directory $BFS_CONFIG_DIR/clamav not found (set BACKUPFS_TEST_CONFIG_DIR)"
        return 1
    fi
    mkdir -p "$dbdir" "$tmpdir" || return 1
    for f in "$BFS_CONFIG_DIR"/clamav/*; do
        [[ -f $f ]] || continue
        cp -- "$f" "$dbdir/" || return 1
        n=$((n + 1))
    done
    if ((n == 0)); then
        bfs_err "no signature files in $BFS_CONFIG_DIR/clamav"
        return 1
    fi
    rm -f "$sock" "$log" "$out"
    if [[ ${BFS_CLAMD_NO_TCP:-0} != 1 ]]; then
        port=$(bfs_free_port) || return 1
    fi
    {
        echo "# generated by scripts/lib/services.sh for a private test/demo clamd"
        echo "Foreground yes"
        echo "DatabaseDirectory $dbdir"
        echo "OfficialDatabaseOnly no"
        echo "LocalSocket $sock"
        echo "LocalSocketMode 600"
        echo "FixStaleSocket yes"
        if [[ -n $port ]]; then
            echo "TCPSocket $port"
            echo "TCPAddr 127.0.0.1"
        fi
        echo "TemporaryDirectory $tmpdir"
        echo "StreamMaxLength ${BFS_CLAMD_STREAM_MAX:-64M}"
        echo "MaxScanSize ${BFS_CLAMD_SCAN_MAX:-256M}"
        echo "MaxFileSize ${BFS_CLAMD_SCAN_MAX:-256M}"
        # A file over a limit is reported, so backupfs records it as not scanned.
        echo "AlertExceedsMax yes"
        echo "MaxThreads 4"
        echo "ReadTimeout 120"
        echo "CommandReadTimeout 30"
        echo "SelfCheck 0"
        echo "LogFile $log"
        echo "LogTime yes"
        echo "LogClean no"
        echo "LogVerbose no"
        echo "PidFile $workdir/clamd.pid"
    } >"$conf"

    start=$(date +%s%N)
    "$clamd_bin" -c "$conf" >"$out" 2>&1 </dev/null &
    BFS_CLAMD_PID=$!
    echo "$BFS_CLAMD_PID" >"$workdir/clamd.ourpid"
    export BFS_CLAMD_PID

    for ((i = 0; i < timeout * 10; i++)); do
        if bfs_clamd_ping "$sock"; then
            now=$(date +%s%N)
            BFS_CLAMD_SOCKET=$sock
            BFS_CLAMD_CONF=$conf
            BFS_CLAMD_LOG=$log
            export BFS_CLAMD_SOCKET BFS_CLAMD_CONF BFS_CLAMD_LOG
            if [[ -n $port ]]; then
                BFS_CLAMD_TCP=127.0.0.1:$port
                export BFS_CLAMD_TCP
            fi
            bfs_log "clamd ready in $(((now - start) / 1000000)) ms: pid $BFS_CLAMD_PID, socket $sock${port:+, tcp 127.0.0.1:$port}"
            return 0
        fi
        if ! bfs_pid_alive "$BFS_CLAMD_PID"; then
            wait "$BFS_CLAMD_PID" 2>/dev/null || true
            bfs_err "clamd exited during start-up (config $conf)"
            bfs_log_tail "$out"
            bfs_log_tail "$log"
            unset BFS_CLAMD_PID
            return 1
        fi
        sleep 0.1
    done
    bfs_err "clamd did not answer PING on $sock within ${timeout}s"
    bfs_log_tail "$out"
    bfs_log_tail "$log"
    bfs_stop_pid "$BFS_CLAMD_PID"
    unset BFS_CLAMD_PID
    return 1
}

# ---------------------------------------------------------------------------
# S3 (s3s-fs)
# ---------------------------------------------------------------------------

# bfs_s3_curl ARGS...: curl signed with SigV4 for the private s3s-fs.
# curl 7.88 (Debian 12) does not send x-amz-content-sha256 by itself, which S3
# servers require, so it is added here (UNSIGNED-PAYLOAD unless the caller
# passes its own header).  Note: curl 7.88 also does not sort or encode query
# parameters for the signature; pass them sorted and percent-encoded
# (e.g. "?list-type=2&prefix=a%2F").
bfs_s3_curl() {
    local a have_sha=0
    for a in "$@"; do
        [[ ${a,,} == x-amz-content-sha256:* ]] && have_sha=1
    done
    local extra=()
    ((have_sha)) || extra=(-H "x-amz-content-sha256: UNSIGNED-PAYLOAD")
    curl --silent --show-error \
        --aws-sigv4 "aws:amz:${BFS_S3_REGION:-us-east-1}:s3" \
        --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" \
        "${extra[@]}" "$@"
}

# bfs_start_s3 WORKDIR BUCKET
# Starts s3s-fs on a free 127.0.0.1 port, storing objects under WORKDIR/s3
# (a bucket is a directory there), with random credentials, and creates BUCKET
# with a CreateBucket request.  Waits up to BFS_S3_TIMEOUT seconds (default 30).
# Exports BFS_S3_ENDPOINT, BFS_S3_PID, BFS_S3_ROOT, BFS_S3_BUCKET, BFS_S3_REGION,
# AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_EC2_METADATA_DISABLED.
bfs_start_s3() {
    local workdir=${1:?usage: bfs_start_s3 WORKDIR BUCKET}
    local bucket=${2:?usage: bfs_start_s3 WORKDIR BUCKET}
    local bin root log port endpoint i code timeout
    timeout=${BFS_S3_TIMEOUT:-30}
    if ! bin=$(bfs_find_s3s_fs); then
        bfs_err "s3s-fs not found on PATH or in ~/.cargo/bin (cargo install s3s-fs@$BFS_S3S_FS_VERSION --locked --features binary)"
        return 1
    fi
    mkdir -p "$workdir" || return 1
    workdir=$(cd "$workdir" && pwd) || return 1
    root=$workdir/s3
    log=$workdir/s3s-fs.log
    mkdir -p "$root" || return 1
    port=$(bfs_free_port) || return 1
    endpoint=http://127.0.0.1:$port

    AWS_ACCESS_KEY_ID=bfs$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
    AWS_SECRET_ACCESS_KEY=$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')
    AWS_EC2_METADATA_DISABLED=true
    BFS_S3_REGION=${BFS_S3_REGION:-us-east-1}
    AWS_REGION=$BFS_S3_REGION
    export AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_EC2_METADATA_DISABLED BFS_S3_REGION AWS_REGION

    "$bin" --host 127.0.0.1 --port "$port" \
        --access-key "$AWS_ACCESS_KEY_ID" --secret-key "$AWS_SECRET_ACCESS_KEY" \
        "$root" >"$log" 2>&1 </dev/null &
    BFS_S3_PID=$!
    echo "$BFS_S3_PID" >"$workdir/s3s-fs.ourpid"
    export BFS_S3_PID

    # Any HTTP answer (an unsigned request gets 403) means it is listening.
    for ((i = 0; i < timeout * 10; i++)); do
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$endpoint/" 2>/dev/null) || code=000
        [[ $code != 000 ]] && break
        if ! bfs_pid_alive "$BFS_S3_PID"; then
            wait "$BFS_S3_PID" 2>/dev/null || true
            bfs_err "s3s-fs exited during start-up"
            bfs_log_tail "$log"
            unset BFS_S3_PID
            return 1
        fi
        sleep 0.1
    done
    if [[ $code == 000 ]]; then
        bfs_err "s3s-fs did not answer on $endpoint within ${timeout}s"
        bfs_log_tail "$log"
        bfs_stop_pid "$BFS_S3_PID"
        unset BFS_S3_PID
        return 1
    fi

    BFS_S3_ENDPOINT=$endpoint
    BFS_S3_ROOT=$root
    BFS_S3_BUCKET=$bucket
    export BFS_S3_ENDPOINT BFS_S3_ROOT BFS_S3_BUCKET

    code=$(bfs_s3_curl -o /dev/null -w '%{http_code}' -X PUT "$endpoint/$bucket") || code=000
    if [[ $code != 200 ]]; then
        bfs_err "CreateBucket $bucket on $endpoint failed (HTTP $code)"
        bfs_log_tail "$log"
        bfs_stop_pid "$BFS_S3_PID"
        unset BFS_S3_PID
        return 1
    fi
    code=$(bfs_s3_curl -o /dev/null -w '%{http_code}' -I "$endpoint/$bucket") || code=000
    if [[ $code != 200 ]]; then
        bfs_err "HeadBucket $bucket on $endpoint failed (HTTP $code) after creating it"
        bfs_log_tail "$log"
        bfs_stop_pid "$BFS_S3_PID"
        unset BFS_S3_PID
        return 1
    fi
    bfs_log "s3s-fs ready: pid $BFS_S3_PID, endpoint $endpoint, bucket $bucket, data $root"
    return 0
}

# bfs_bench_prepare REPO
# What every benchmark needs first: root, the packages, cargo, s3s-fs, and a release build
# of backupfs (skipped with BACKUPFS_BENCH_NO_BUILD=1).
bfs_bench_prepare() {
    local repo=${1:?usage: bfs_bench_prepare REPO}
    if [[ $(id -u) -ne 0 ]]; then
        bfs_err "run as root (FUSE mount)"
        return 1
    fi
    bfs_ensure_packages && bfs_ensure_rust && bfs_ensure_s3s_fs || return 1
    if [[ ${BACKUPFS_BENCH_NO_BUILD:-0} != 1 ]]; then
        (cd "$repo" && cargo build --release --quiet) || return 1
    fi
}

# bfs_bench_begin REPO
# The start of every benchmark: no cloud metadata lookups, BIN (the release binary) and
# empty WORK, DAEMON_PID, TIME_PID and BFS_BENCH_PIDS, the clean-up traps, then the
# packages and the build (bfs_bench_prepare).
bfs_bench_begin() {
    local repo=${1:?usage: bfs_bench_begin REPO}
    export AWS_EC2_METADATA_DISABLED=true
    BIN=$repo/target/release/backupfs
    WORK="" DAEMON_PID="" TIME_PID="" BFS_BENCH_PIDS=""
    bfs_bench_traps
    bfs_bench_prepare "$repo"
}

# bfs_bench_traps
# Installs the clean-up every benchmark needs, whatever way it ends: stops the daemon
# (DAEMON_PID), the process timing it (TIME_PID) and the further processes listed in
# BFS_BENCH_PIDS (space-separated: a second daemon, a bindfs), if set, then
# bfs_bench_teardown WORK.
bfs_bench_traps() {
    trap bfs_bench_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

bfs_bench_cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    local pid
    bfs_stop_pid "${DAEMON_PID:-}" 60
    bfs_stop_pid "${TIME_PID:-}" 10
    for pid in ${BFS_BENCH_PIDS:-}; do
        bfs_stop_pid "$pid" 60
    done
    bfs_bench_teardown "${WORK:-}"
    exit "$rc"
}

# bfs_bench_config DIR PREFIX PASSFILE METRICS_LISTEN [MAX_STREAM] [EXTRA_TOML] [MOUNT_TOML]
# Writes DIR/backupfs.toml for a benchmark: source, mnt, state and logs under DIR, the clamd
# and S3 server started before, bucket "backups" with PREFIX, metrics on METRICS_LISTEN
# ("" for none), scan.max-stream-size MAX_STREAM (default 25MiB), then EXTRA_TOML (whole
# sections). MOUNT_TOML holds further keys of the [mount] section (e.g. passthrough).
bfs_bench_config() {
    local dir=${1:?usage: bfs_bench_config DIR PREFIX PASSFILE METRICS_LISTEN} prefix=$2
    cat >"$dir/backupfs.toml" <<CONF
[mount]
source = "source"
mountpoint = "mnt"
${7:-}
[state]
dir = "state"
[log]
file = "logs/backup_pipeline.log"
audit = "logs/uploads.jsonl"
quarantine-dir = "logs/quarantine"
[scan]
clamd = "unix:$BFS_CLAMD_SOCKET"
max-stream-size = "${5:-25MiB}"
[encrypt]
passphrase-file = "$3"
[destination]
kind = "s3"
bucket = "backups"
prefix = "$prefix"
endpoint = "$BFS_S3_ENDPOINT"
path-style = true
allowed = ["s3://backups/$prefix"]
[metrics]
listen = "$4"
${6:-}
CONF
}

# bfs_bench_setup NAME METRICS_LISTEN [EXTRA_TOML] [MOUNT_TOML]
# The stack most benchmarks run on: makes WORK (a new /tmp/backupfs-NAME.XXXXXX, assigned to
# the caller's WORK), starts clamd and the S3 server, writes a passphrase and
# WORK/backupfs.toml (prefix "bench", see bfs_bench_config).
bfs_bench_setup() {
    local name=${1:?usage: bfs_bench_setup NAME METRICS_LISTEN [EXTRA_TOML] [MOUNT_TOML]}
    WORK=$(mktemp -d "/tmp/backupfs-$name.XXXXXX") || return 1
    mkdir -p "$WORK/source" "$WORK/mnt"
    bfs_start_clamd "$WORK/clamd" >/dev/null || return 1
    bfs_start_s3 "$WORK" backups >/dev/null || return 1
    (umask 077 && head -c 24 /dev/urandom | base64 >"$WORK/passphrase")
    bfs_bench_config "$WORK" bench "$WORK/passphrase" "$2" "" "${3:-}" "${4:-}"
}

# bfs_mounts_under DIR
# Prints every mount point below DIR.
bfs_mounts_under() {
    awk -v w="${1:?usage: bfs_mounts_under DIR}/" 'index($2, w) == 1 {print $2}' /proc/mounts
}

# bfs_unmount_under DIR
# Lazily unmounts every mount below DIR (what a benchmark or demo mounted there).
bfs_unmount_under() {
    local m
    for m in $(bfs_mounts_under "${1:?usage: bfs_unmount_under DIR}"); do
        fusermount3 -u -z "$m" 2>/dev/null || umount -l "$m"
    done
}

# bfs_bench_teardown WORK
# The end of every benchmark: unmount what is below WORK, stop the clamd and S3 server
# this shell started, and remove WORK. Stop the daemon first.
bfs_bench_teardown() {
    local work=$1
    [[ -n $work ]] && bfs_unmount_under "$work"
    bfs_stop_pid "${BFS_CLAMD_PID:-}"
    bfs_stop_pid "${BFS_S3_PID:-}"
    [[ -n $work ]] && rm -rf -- "$work"
}
