#!/usr/bin/env bash
#
# scripts/bench-memory.sh - peak memory of the backupfs daemon while it backs up one
# large file, against the same daemon backing up a small one, measured in the same run.
#
# Usage (as root):
#
#     bash scripts/bench-memory.sh [SIZE_MIB]      # default 1024 (1 GiB)
#
# For each of 1 MiB and SIZE_MIB it starts a private clamd and S3 server (s3s-fs on
# 127.0.0.1), runs `backupfs mount` under /usr/bin/time -v, writes one random file into
# the mount, waits for its audit record, stops the daemon and reads "Maximum resident set
# size". The large object is then fetched over S3 and checked with gpg | zstd -d | sha256sum.
# It prints peak RSS for both runs, their ratio (flat memory means a ratio near 1), and the
# pipeline time for the large file. Everything it starts is stopped on exit.
#
# Environment: BACKUPFS_BENCH_NO_BUILD=1 uses the existing target/release/backupfs.

set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib/services.sh
. "$repo/scripts/lib/services.sh"

LARGE_MIB=${1:-1024}

bfs_bench_begin "$repo"

WORK=$(mktemp -d /tmp/backupfs-bench.XXXXXX)
# clamd must accept the whole file, or it would be "not scanned" and never uploaded.
BFS_CLAMD_STREAM_MAX=$((LARGE_MIB + 64))M BFS_CLAMD_SCAN_MAX=$((LARGE_MIB + 64))M \
    bfs_start_clamd "$WORK/clamd" >/dev/null
bfs_start_s3 "$WORK" backups >/dev/null
PASSFILE=$WORK/passphrase
(umask 077 && head -c 24 /dev/urandom | base64 >"$PASSFILE")

# run_one NAME SIZE_MIB -> prints "peak_kib seconds"
run_one() {
    local name=$1 mib=$2 dir=$WORK/$1 start end mnt=$WORK/$1/mnt
    mkdir -p "$dir/source" "$dir/mnt" "$dir/state"
    bfs_bench_config "$dir" "$name" "$PASSFILE" "" "$((LARGE_MIB + 64))MiB"
    head -c $((mib << 20)) /dev/urandom >"$WORK/$name.data"
    /usr/bin/time -v -o "$dir/time.txt" "$BIN" mount --config "$dir/backupfs.toml" \
        >"$dir/daemon.out" 2>&1 &
    TIME_PID=$!
    for _ in $(seq 1 200); do
        [[ -n $(bfs_mounts_under "$dir") ]] && break
        sleep 0.1
    done
    # Signals go to the daemon itself; GNU time would die of SIGTERM and orphan it.
    DAEMON_PID=$(pgrep -P "$TIME_PID" | head -n 1)
    start=$(date +%s.%N)
    cp "$WORK/$name.data" "$mnt/$name.data"
    for _ in $(seq 1 3000); do
        grep -q '"outcome":"uploaded"' "$dir/logs/uploads.jsonl" 2>/dev/null && break
        sleep 0.1
    done
    end=$(date +%s.%N)
    grep -q '"outcome":"uploaded"' "$dir/logs/uploads.jsonl" || {
        bfs_err "$name: no upload recorded"
        tail -n 20 "$dir/logs/backup_pipeline.log" >&2
        return 1
    }
    kill -TERM "$DAEMON_PID"
    wait "$TIME_PID" || true
    DAEMON_PID=""
    TIME_PID=""
    local rss
    rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$dir/time.txt")
    echo "$rss $(awk -v a="$start" -v b="$end" 'BEGIN {printf "%.2f", b - a}')"
}

small=$(run_one small 1)
large=$(run_one large "$LARGE_MIB")

# Read the large object back with stock tools.
key=$(sed -n 's/.*"object":"\([^"]*\)".*/\1/p' "$WORK/large/logs/uploads.jsonl" | head -n 1)
mkdir -m 0700 "$WORK/gnupg"
bfs_s3_curl --fail -o "$WORK/large.pgp" "$BFS_S3_ENDPOINT/backups/$key"
restored=$(gpg --homedir "$WORK/gnupg" --batch --quiet --no-autostart --pinentry-mode loopback \
    --passphrase-file "$PASSFILE" -d "$WORK/large.pgp" | zstd -d -c | sha256sum | cut -d' ' -f1)
original=$(sha256sum "$WORK/large.data" | cut -d' ' -f1)
[[ $restored == "$original" ]] && check=identical || check=DIFFERENT

echo "pipeline steps for the large file:"
grep -E 'stage=' "$WORK/large/logs/backup_pipeline.log" | sed -E 's/^[^ ]+T([0-9:.]+)Z +INFO +[^ ]+ +[^ ]+ /  \1 /' | cut -c1-110
read -r s_rss s_secs <<<"$small"
read -r l_rss l_secs <<<"$large"
printf '\n%-22s %14s %12s\n' "file backed up" "peak RSS" "pipeline s"
printf '%-22s %11d KiB %12.1f\n' "1 MiB" "$s_rss" "$s_secs"
printf '%-22s %11d KiB %12.1f\n' "$LARGE_MIB MiB" "$l_rss" "$l_secs"
awk -v l="$l_rss" -v s="$s_rss" 'BEGIN {printf "peak RSS ratio large/small: %.2f\n", l / s}'
awk -v m="$LARGE_MIB" -v t="$l_secs" \
    'BEGIN {printf "large file: %.0f MiB/s from cp to uploaded (hash, classify, scan, seal, upload)\n", m / t}'
printf 'restored with curl + gpg + zstd: %s\n' "$check"
[[ $check == identical ]]
