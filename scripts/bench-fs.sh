#!/usr/bin/env bash
#
# scripts/bench-fs.sh - what the mount costs the applications writing into it: file system
# throughput through backupfs against the native source directory and against bindfs (a
# classic FUSE passthrough), all measured in the same run.
#
# Usage (as root):
#
#     bash scripts/bench-fs.sh                                      # full run, ~10-15 min
#     BENCH_FS_WRITE_MIB=64 BENCH_FS_FILES=1000 bash scripts/bench-fs.sh   # smoke run
#
# Targets, each on its own directory under one work directory on the same file system:
#   native    the directory itself (what backupfs's mount.source is)
#   bindfs    `bindfs -f --no-allow-other SRC MNT` with its defaults (single-threaded,
#             libfuse's 1 s entry and attribute caches), unmounted with fusermount3 -u
#   bfs-pt    backupfs, mount.passthrough = "on": file reads and writes bypass the daemon
#   bfs-fuse  backupfs, mount.passthrough = "off": every read and write goes through it
# Both backupfs mounts use cache-timeout = "1s", like bindfs, and share one private clamd
# and one S3 server (s3s-fs on 127.0.0.1), each with its own prefix and state directory.
# A mount that fails to start is reported as n/a with the reason; the others still run.
#
# Workloads, each run BENCH_FS_REPS times (default 3) per target, targets interleaved; the
# table shows the median, as throughput (MB/s = 10^6 bytes/s, or operations/s) so that
# every ratio target/native reads the same way: higher is better, 1.00 is native speed.
#   write   dd if=/dev/zero bs=1M count=BENCH_FS_WRITE_MIB (default 512) conv=fsync into
#           one file (zeros are fine: no layer compresses on the write path).
#   read    dd of that file to /dev/null, after `sync; echo 3 > /proc/sys/vm/drop_caches`
#           before every read, so that every target reads from the disk (this drops the
#           whole machine's page cache, for a fair comparison).
#   create  one python3 process creates, writes and closes BENCH_FS_FILES (default
#           10000) files of 4 KiB in a new directory (os.open O_CREAT|O_EXCL, one write,
#           close). Every file has distinct content, so backupfs backs up each one.
#           Every run writes a new directory, and nothing is removed until all create
#           and stat runs are over: ext4 (here without a journal) does not reuse inodes
#           freed in the last 30 s and scans past each of them, so a removal just before
#           a create run would slow whichever target allocates in that block group.
#   stat    lstat of each file of the last create run in one python3 process, twice;
#           only the second pass is timed, since the first includes the kernel's initial
#           lookups. Then all create runs' files are removed (untimed).
#   git     `git status` on a committed repository of BENCH_FS_FILES files (100 per
#           directory), created through the target; one warm-up run, then one timed.
#
# The backup pipeline runs concurrently, as it does for users: every file closed after a
# change is queued and, after pipeline.settle-delay, hashed, scanned, sealed and uploaded
# on this machine's CPUs while the workload goes on. After every measurement on a backupfs
# target the script waits (up to BENCH_FS_DRAIN_TIMEOUT seconds, default 600) until that
# mount's queue is empty (`backupfs status --json`), so that one measurement's backups do
# not run during the next one's timing. The time spent draining is printed, and so is
# each daemon's open-file limit and how many descriptors it holds (files the kernel
# remembers are kept by file handle, so this stays small however many it has looked up).
#
# Other environment: BENCH_FS_REPS (default 3); BENCH_FS_TIMEOUT, the limit of one
# measurement in seconds (default 600); BACKUPFS_BENCH_NO_BUILD=1 uses the existing
# target/release/backupfs. Everything the script mounts and starts is unmounted and
# stopped on exit, also on failure or Ctrl-C, and its work directory is removed.

set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib/services.sh
. "$repo/scripts/lib/services.sh"

WRITE_MIB=${BENCH_FS_WRITE_MIB:-512}
FILES=${BENCH_FS_FILES:-10000}
REPS=${BENCH_FS_REPS:-3}
DRAIN_TIMEOUT=${BENCH_FS_DRAIN_TIMEOUT:-600}
MEASURE_TIMEOUT=${BENCH_FS_TIMEOUT:-600}

for v in WRITE_MIB FILES REPS DRAIN_TIMEOUT MEASURE_TIMEOUT; do
    if ! [[ ${!v} =~ ^[1-9][0-9]*$ ]]; then
        bfs_err "$v must be a positive integer, not '${!v}'"
        exit 2
    fi
done

bfs_bench_begin "$repo"
for tool in bindfs fusermount3 git python3 dd timeout; do
    if ! command -v "$tool" >/dev/null; then
        bfs_err "$tool not found (bfs_ensure_packages should have installed it)"
        exit 1
    fi
done

MOUNT_COMMON='cache-timeout = "1s"'
# Nothing should be queued when a daemon stops; after Ctrl-C, do not wait for the backlog.
PIPELINE_TOML='[pipeline]
drain-timeout = "2s"'
bfs_bench_setup fs "" "$PIPELINE_TOML" "passthrough = \"on\"
$MOUNT_COMMON"
mkdir -p "$WORK/fuse-only/source" "$WORK/fuse-only/mnt" "$WORK/native" \
    "$WORK/bindfs/src" "$WORK/bindfs/mnt" "$WORK/home"
bfs_bench_config "$WORK/fuse-only" fuse "$WORK/passphrase" "" "" "$PIPELINE_TOML" \
    "passthrough = \"off\"
$MOUNT_COMMON"

TARGETS=(native bindfs bfs-pt bfs-fuse)
declare -A DIR=(
    [native]=$WORK/native
    [bindfs]=$WORK/bindfs/mnt
    [bfs-pt]=$WORK/mnt
    [bfs-fuse]=$WORK/fuse-only/mnt
)
declare -A CONF=([bfs-pt]=$WORK/backupfs.toml [bfs-fuse]=$WORK/fuse-only/backupfs.toml)
declare -A PID=()
declare -A NA=()       # target -> why it cannot be measured
declare -A SKIP=()     # workload:target -> set when that workload cannot run there
declare -A DRAINED=()  # target -> seconds spent waiting for its queue
VALUE=""
RESULTS=$WORK/results.tsv
ERRORS=$WORK/errors.txt
: >"$RESULTS"
: >"$ERRORS"

# The workloads. Each prints one throughput figure on stdout.
cat >"$WORK/fsbench.py" <<'PY'
"""Workloads of scripts/bench-fs.sh: each prints one throughput figure."""
import os
import subprocess
import sys
import time

FILE_SIZE = 4096
GIT_ENV = dict(
    os.environ,
    GIT_CONFIG_NOSYSTEM="1",
    GIT_CONFIG_GLOBAL="/dev/null",
    GIT_AUTHOR_NAME="bench",
    GIT_AUTHOR_EMAIL="bench@localhost",
    GIT_COMMITTER_NAME="bench",
    GIT_COMMITTER_EMAIL="bench@localhost",
)


def timed(fn):
    start = time.monotonic()
    fn()
    return time.monotonic() - start


def dd(*args):
    subprocess.run(["dd", *args, "status=none"], check=True)


def payload(i):
    # Distinct per file, the same for every target.
    head = f"file {i:08d}\n".encode()
    return head + b"x" * (FILE_SIZE - len(head) - 1) + b"\n"


def names(n):
    return [f"f{i:06d}" for i in range(n)]


def write(d, mib):
    path = os.path.join(d, "big.bin")
    secs = timed(lambda: dd("if=/dev/zero", f"of={path}", "bs=1M", f"count={mib}", "conv=fsync"))
    return mib * 2**20 / 1e6 / secs


def read(d, mib):
    path = os.path.join(d, "big.bin")
    size = os.stat(path).st_size
    if size != mib * 2**20:
        sys.exit(f"{path} has {size} bytes, expected {mib} MiB")
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")
    secs = timed(lambda: dd(f"if={path}", "of=/dev/null", "bs=1M"))
    return size / 1e6 / secs


def create(d, n):
    os.mkdir(d)
    todo = [(os.path.join(d, name), payload(i)) for i, name in enumerate(names(n))]

    def run():
        for path, data in todo:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                if os.write(fd, data) != len(data):
                    sys.exit(f"short write to {path}")
            finally:
                os.close(fd)

    return n / timed(run)


def stat(d, n):
    paths = [os.path.join(d, name) for name in names(n)]

    def run():
        for path in paths:
            if os.lstat(path).st_size != FILE_SIZE:
                sys.exit(f"{path}: wrong size")

    run()
    return n / timed(run)


def git(d, *args):
    done = subprocess.run(["git", "-C", d, *args], env=GIT_ENV, capture_output=True, text=True)
    if done.returncode != 0:
        why = (done.stderr.strip().splitlines() or ["no message"])[-1]
        sys.exit(f"git {' '.join(args)} in {d} exited with {done.returncode}: {why}")
    return done.stdout


def git_setup(d, n):
    os.mkdir(d)
    for i, name in enumerate(names(n)):
        sub = os.path.join(d, f"d{i // 100:04d}")
        if i % 100 == 0:
            os.mkdir(sub)
        with open(os.path.join(sub, name), "wb") as f:
            f.write(payload(i))
    git(d, "-c", "init.defaultBranch=main", "init", "-q")
    git(d, "add", "-A")
    git(d, "commit", "-q", "-m", "bench")
    return n


def git_status(d, n):
    out = []
    git(d, "status", "--porcelain")
    secs = timed(lambda: out.append(git(d, "status", "--porcelain")))
    if out[0]:
        sys.exit(f"git status in {d} is not clean: {out[0].splitlines()[:3]}")
    return n / secs


WORKLOADS = {"write": write, "read": read, "create": create, "stat": stat,
             "git-setup": git_setup, "git": git_status}

if __name__ == "__main__":
    name, directory, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    print(f"{WORKLOADS[name](directory, count):.3f}")
PY

is_backupfs() { [[ $1 == bfs-* ]]; }

# Log text without the terminal colours the daemon puts on its standard error.
plain() { sed -E 's/\x1b\[[0-9;]*m//g'; }

mounted() { awk -v m="$1" '$2 == m {f = 1} END {exit !f}' /proc/mounts; }

# wait_mounted TARGET LOG: wait for the mount of TARGET (whose process is PID[TARGET]);
# on failure set NA[TARGET] to the reason, from the last line of LOG.
wait_mounted() {
    local t=$1 log=$2
    for _ in $(seq 1 300); do
        mounted "${DIR[$t]}" && return 0
        bfs_pid_alive "${PID[$t]}" || break
        sleep 0.1
    done
    if bfs_pid_alive "${PID[$t]}"; then
        NA[$t]="no mount after 30 s"
    else
        NA[$t]="exited at start: $(plain <"$log" | grep -v '^\s*$' | tail -n 1 | cut -c1-200)"
    fi
    bfs_err "$t: ${NA[$t]}"
}

start_bindfs() {
    bindfs -f --no-allow-other "$WORK/bindfs/src" "${DIR[bindfs]}" \
        >"$WORK/bindfs/bindfs.out" 2>&1 </dev/null &
    PID[bindfs]=$!
    BFS_BENCH_PIDS+=" ${PID[bindfs]}"
    wait_mounted bindfs "$WORK/bindfs/bindfs.out"
}

start_backupfs() {
    local t=$1 dir
    dir=$(dirname "${CONF[$t]}")
    "$BIN" mount --config "${CONF[$t]}" >"$dir/daemon.out" 2>&1 </dev/null &
    PID[$t]=$!
    BFS_BENCH_PIDS+=" ${PID[$t]}"
    wait_mounted "$t" "$dir/daemon.out"
}

# What the daemon of TARGET said about passthrough (first line, and how often it was
# refused for a file), or "unknown".
passthrough_note() {
    local log line refused
    log=$(dirname "${CONF[$1]}")/logs/backup_pipeline.log
    line=$(grep -i -m 1 passthrough "$log" 2>/dev/null || true)
    if [[ -z $line ]]; then
        echo "unknown (the daemon logged nothing about passthrough)"
        return
    fi
    refused=$(grep -ci 'passthrough refused' "$log" || true)
    # Drop the timestamp, level and thread, keep the module, message and fields.
    sed -E 's/^[0-9T:.-]+Z +[A-Z]+ +[^ ]+ +//' <<<"$line" | cut -c1-150
    if ((refused > 0)); then
        echo "    and $refused log lines saying it was refused"
    fi
}

# wait_drain TARGET: wait until the queue of that mount is empty.
wait_drain() {
    local t=$1 start now counts pending failed=0
    start=$(date +%s.%N)
    while :; do
        if counts=$("$BIN" status --config "${CONF[$t]}" --json 2>/dev/null |
            python3 -c 'import json, sys; d = json.load(sys.stdin); print(d["pending"], d["failed"])'); then
            read -r pending failed <<<"$counts"
            ((pending == 0)) && break
        fi
        now=$(date +%s.%N)
        if awk -v a="$start" -v b="$now" -v l="$DRAIN_TIMEOUT" 'BEGIN {exit !(b - a > l)}'; then
            echo "$t: queue not empty after ${DRAIN_TIMEOUT}s (${pending:-?} pending), going on" |
                tee -a "$ERRORS" >&2
            break
        fi
        if ! bfs_pid_alive "${PID[$t]}"; then
            break
        fi
        sleep 0.5
    done
    if ((failed > 0)); then
        echo "$t: $failed failed backup jobs (backupfs status --config ${CONF[$t]})" >>"$ERRORS"
    fi
    now=$(date +%s.%N)
    DRAINED[$t]=$(awk -v a="$start" -v b="$now" -v s="${DRAINED[$t]:-0}" \
        'BEGIN {printf "%.1f", s + b - a}')
}

# usable TARGET: the target is up (its daemon alive and its mount present).
usable() {
    local t=$1
    [[ -z ${NA[$t]:-} ]] || return 1
    [[ $t == native ]] && return 0
    if ! bfs_pid_alive "${PID[$t]}" || ! mounted "${DIR[$t]}"; then
        NA[$t]="the daemon or its mount went away during the run"
        bfs_err "$t: ${NA[$t]}"
        return 1
    fi
}

# run WORKLOAD TARGET PATH COUNT: one measurement; sets VALUE to the figure or "err".
run() {
    local w=$1 t=$2
    sync
    if ! VALUE=$(timeout -k 10 "$MEASURE_TIMEOUT" python3 "$WORK/fsbench.py" "$w" "$3" "$4" \
        2>"$WORK/last.err"); then
        echo "$w on $t: $(tail -n 1 "$WORK/last.err" | cut -c1-200)" >>"$ERRORS"
        VALUE=err
    fi
    if is_backupfs "$t"; then
        wait_drain "$t"
    fi
}

# discard TARGET PATH: remove what a workload left (untimed), then let the mount settle.
discard() {
    local t=$1
    usable "$t" || return 0
    if ! rm -rf -- "$2" 2>"$WORK/last.err"; then
        echo "removing $2 on $t: $(tail -n 1 "$WORK/last.err" | cut -c1-200)" >>"$ERRORS"
    fi
    if is_backupfs "$t"; then
        wait_drain "$t"
    fi
}

# measure WORKLOAD COUNT [SUBDIR_PREFIX]: every repetition on every target.
measure() {
    local w=$1 count=$2 sub=${3:-} rep t path
    for ((rep = 1; rep <= REPS; rep++)); do
        for t in "${TARGETS[@]}"; do
            [[ -z ${SKIP[$w:$t]:-} ]] || continue
            usable "$t" || continue
            path=${DIR[$t]}
            [[ -n $sub ]] && path+=/$sub
            [[ $sub == c ]] && path+=$rep
            run "$w" "$t" "$path" "$count"
            printf '%s\t%s\t%s\t%s\n' "$w" "$t" "$rep" "$VALUE" >>"$RESULTS"
            printf '  %-7s %-9s run %d: %s\n' "$w" "$t" "$rep" "$VALUE"
        done
    done
}

echo "kernel $(uname -r), $(nproc) CPUs; bindfs $(bindfs --version 2>&1 | head -n 1 | awk '{print $2}')"
echo "mounting bindfs and backupfs (passthrough on, off)"
start_bindfs
start_backupfs bfs-pt
start_backupfs bfs-fuse

started=$(date +%s)
echo "write: ${WRITE_MIB} MiB, bs=1M, conv=fsync"
measure write "$WRITE_MIB"
echo "read: ${WRITE_MIB} MiB after drop_caches"
measure read "$WRITE_MIB"
echo "create: $FILES files of 4 KiB"
measure create "$FILES" c
echo "stat: $FILES files, second pass"
measure stat "$FILES" "c$REPS"
for t in "${TARGETS[@]}"; do
    for ((rep = 1; rep <= REPS; rep++)); do
        discard "$t" "${DIR[$t]}/c$rep"
    done
done
echo "git: setting up a repository of $FILES files on each target"
for t in "${TARGETS[@]}"; do
    usable "$t" || continue
    run git-setup "$t" "${DIR[$t]}/repo" "$FILES"
    if [[ $VALUE == err ]]; then
        SKIP[git:$t]=1
    fi
done
echo "git: status, after one warm-up"
measure git "$FILES" repo
elapsed=$(($(date +%s) - started))

echo
echo "kernel:                        $(uname -r)"
echo "bfs-pt   (passthrough = on):   $(passthrough_note bfs-pt)"
echo "bfs-fuse (passthrough = off):  $(passthrough_note bfs-fuse)"
# backupfs holds a descriptor for every inode the kernel remembers, so this limit bounds
# how many files the kernel may keep looked up through one mount.
for t in bfs-pt bfs-fuse; do
    if bfs_pid_alive "${PID[$t]:-}"; then
        echo "$t daemon open-file limit: $(awk '/^Max open files/ {print $4}' "/proc/${PID[$t]}/limits")," \
            "descriptors open now: $(find "/proc/${PID[$t]}/fd" -mindepth 1 | wc -l)"
    fi
done
for t in "${TARGETS[@]}"; do
    [[ -n ${NA[$t]:-} ]] && echo "$t: n/a: ${NA[$t]}"
done
echo "measured in ${elapsed} s, of which waiting for backup queues to drain:" \
    "bfs-pt ${DRAINED[bfs-pt]:-0} s, bfs-fuse ${DRAINED[bfs-fuse]:-0} s"
echo "median of $REPS runs; ratios are target/native (higher is better, 1.00 = native)"
echo
python3 - "$RESULTS" "${TARGETS[@]}" <<'PY'
import statistics, sys
results, targets = sys.argv[1], sys.argv[2:]
units = {"write": "MB/s", "read": "MB/s", "create": "files/s", "stat": "stats/s", "git": "files/s"}
values = {}
for line in open(results):
    w, t, _, v = line.rstrip("\n").split("\t")
    values.setdefault((w, t), []).append(v)

def median(w, t):
    vs = values.get((w, t), [])
    nums = [float(v) for v in vs if v != "err"]
    if not vs:
        return None, "n/a"
    if len(nums) < len(vs):
        return None, "err"
    m = statistics.median(nums)
    return m, f"{m:.0f}" if m >= 100 else f"{m:.1f}"

head = ["workload", "unit", *targets] + [f"{t}/nat" for t in targets[1:]]
rows = []
for w, unit in units.items():
    meds = [median(w, t) for t in targets]
    base = meds[0][0]
    ratios = [f"{m / base:.2f}" if m is not None and base else "n/a" for m, _ in meds[1:]]
    rows.append([w, unit, *(s for _, s in meds), *ratios])
widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
for r in [head, *rows]:
    print("  ".join(c.ljust(widths[i]) if i < 2 else c.rjust(widths[i]) for i, c in enumerate(r)))
PY
if [[ -s $ERRORS ]]; then
    echo
    echo "problems seen during the run:"
    sed 's/^/  /' "$ERRORS"
    exit 1
fi
