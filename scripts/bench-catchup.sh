#!/usr/bin/env bash
#
# scripts/bench-catchup.sh - how long catch-up on start takes for a tree of unchanged
# files, against a native walk that stats the same files (find -printf), in the same run.
#
# Usage (as root):
#
#     bash scripts/bench-catchup.sh [FILES]      # default 100000
#
# It writes FILES small files (100 distinct contents, 200 directories) straight into a
# source directory, mounts once so that catch-up queues and backs up all of them, stops,
# then mounts again and reads the second catch-up's time from the log ("catch-up
# finished"). It prints that time, the native walk's time and their ratio.
# Environment: BACKUPFS_BENCH_NO_BUILD=1 uses the existing target/release/backupfs;
# BENCH_CATCHUP_LOGS (default target/bench-catchup) keeps the daemon's logs.

set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib/services.sh
. "$repo/scripts/lib/services.sh"

FILES=${1:-100000}

bfs_bench_begin "$repo"

METRICS_PORT=$(bfs_free_port)
bfs_bench_setup catchup "127.0.0.1:$METRICS_PORT"

echo "writing $FILES files into the source directory"
python3 - "$WORK/source" "$FILES" <<'PY'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    d = os.path.join(root, f"d{i % 200:03d}")
    if i < 200:
        os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i:06d}.txt"), "w") as f:
        f.write(f"content {i % 100}\n" * 8)
PY

# The daemon's logs are kept in BENCH_CATCHUP_LOGS (default target/bench-catchup).
LOGS=${BENCH_CATCHUP_LOGS:-$repo/target/bench-catchup}
rm -rf -- "$LOGS" && mkdir -p "$LOGS"
trap 'rc=$?; set +e; cp -- "$WORK/daemon.out" "$WORK/logs/backup_pipeline.log" "$LOGS"/ 2>/dev/null; (exit $rc); bfs_bench_cleanup' EXIT

metric() {
    curl -s "http://127.0.0.1:$METRICS_PORT/metrics" | awk -v m="$1" '$1 == m {print $2}'
}

# start_daemon: mounts under /usr/bin/time, so that the peak RSS of the daemon's whole life,
# its stop included, lands in $WORK/time.out.
start_daemon() {
    /usr/bin/time -f '%M' -o "$WORK/time.out" "$BIN" mount --config "$WORK/backupfs.toml" \
        >>"$WORK/daemon.out" 2>&1 &
    TIME_PID=$!
    DAEMON_PID=""
    for _ in $(seq 1 50); do
        DAEMON_PID=$(pgrep -P "$TIME_PID" | head -n 1) && break
        sleep 0.1
    done
    for _ in $(seq 1 300); do
        awk -v m="$WORK/mnt" '$2 == m {f=1} END {exit !f}' /proc/mounts && return 0
        sleep 0.1
    done
    bfs_err "mount did not appear"
    tail -n 20 "$WORK/daemon.out" >&2
    return 1
}

# stop_daemon: stops it and sets PEAK to its peak RSS in KiB.
stop_daemon() {
    kill -TERM "$DAEMON_PID"
    wait "$TIME_PID" || true
    DAEMON_PID="" TIME_PID=""
    PEAK=$(tail -n 1 "$WORK/time.out")
}

echo "first start: catch-up queues every file; waiting for the backlog to drain"
start_daemon
first=$(date +%s)
while :; do
    sleep 2
    depth=$(metric backupfs_queue_depth)
    running=$(metric backupfs_catchup_running)
    [[ $running == 0 && $depth == 0 && $(metric backupfs_in_flight) == 0 ]] && break
    echo "  queue depth ${depth:-?}"
done
echo "  backlog drained in $(($(date +%s) - first)) s"
stop_daemon
peak_first=$PEAK

echo "second start: nothing changed"
start_daemon
for _ in $(seq 1 600); do
    [[ $(grep -c 'catch-up finished' "$WORK/logs/backup_pipeline.log") -ge 2 ]] && break
    sleep 0.2
done
line=$(grep 'catch-up finished' "$WORK/logs/backup_pipeline.log" | tail -n 1)
stop_daemon
peak_second=$PEAK
catchup=$(sed -E 's/.*seconds=([0-9.]+).*/\1/' <<<"$line")
queued=$(sed -E 's/.*queued=([0-9]+).*/\1/' <<<"$line")

sync
start=$(date +%s.%N)
find "$WORK/source" -type f -printf '%i %s %T@ %C@\n' >/dev/null
end=$(date +%s.%N)
native=$(awk -v a="$start" -v b="$end" 'BEGIN {printf "%.3f", b - a}')

printf '\n%-44s %10s\n' "walk of $FILES unchanged files" "seconds"
printf '%-44s %10.3f\n' "backupfs catch-up (queued: $queued)" "$catchup"
printf '%-44s %10.3f\n' "native: find -printf of inode, size, times" "$native"
awk -v c="$catchup" -v n="$native" 'BEGIN {printf "ratio catch-up / native walk: %.2f\n", c / n}'
echo "daemon peak RSS over its whole run, stop included: ${peak_first} KiB backing up all $FILES files queued at once, ${peak_second} KiB for the unchanged re-scan"
[[ $queued == 0 ]]
