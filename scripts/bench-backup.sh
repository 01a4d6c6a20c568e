#!/usr/bin/env bash
#
# scripts/bench-backup.sh - backup throughput and memory of backupfs against restic and
# rclone (with a crypt remote), on one generated corpus and one loopback S3 server
# (s3s-fs) that all three write to, in the same run.
#
# Usage (as root):
#
#     bash scripts/bench-backup.sh
#
# The corpus (deterministic, about 3 GB in about 200 directories):
#   - BENCH_BACKUP_SMALL (20,000) files of 1-64 KiB, half text and half random, 10% of them
#     exact copies of others;
#   - BENCH_BACKUP_MEDIUM (200) files of 1-16 MiB;
#   - 2 files of BENCH_BACKUP_LARGE_MIB (256) MiB, one random, one text.
#
# The cases:
#   1. cold: backupfs mounted over the corpus backs it all up by its catch-up; restic backup
#      of the corpus; rclone copy of the corpus to a crypt remote;
#   2. live: cp -r of the corpus into a fresh backupfs mount, until every file is uploaded
#      and the daemon has stopped; cp -r to a plain directory, then restic backup of it;
#   3. re-run with nothing changed: backupfs mounted again (its catch-up), restic backup
#      again, rclone copy again.
#
# Before them, the floor clamd sets: a fresh clamd (no scan cache) scanning the corpus on
# its own with clamdscan --fdpass -m, as backupfs hands it files. backupfs's cold case
# cannot be faster than that on the same cores.
#
# backupfs runs with its defaults: classification and the virus scan on. clamd and the S3
# server are separate processes; the CPU each spent during a run is shown on its own line
# under the run. Wall time, CPU time (user +
# system) and peak RSS come from /usr/bin/time; backupfs's wall time ends when the daemon
# has exited after SIGTERM, once its queue was empty and nothing was in flight.
#
# Environment: BENCH_BACKUP_SMALL, BENCH_BACKUP_MEDIUM, BENCH_BACKUP_LARGE_MIB shrink the
# corpus; BENCH_BACKUP_WORKERS sets backupfs's pipeline.workers (default: its default);
# BENCH_BACKUP_PEERS=0 times backupfs alone (for profiling); BACKUPFS_BENCH_NO_BUILD=1 uses
# the existing target/release/backupfs. The tools' output and the daemons' logs are kept
# in BENCH_BACKUP_LOGS (default target/bench-backup), replaced on each run.

set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib/services.sh
. "$repo/scripts/lib/services.sh"

SMALL=${BENCH_BACKUP_SMALL:-20000}
MEDIUM=${BENCH_BACKUP_MEDIUM:-200}
LARGE_MIB=${BENCH_BACKUP_LARGE_MIB:-256}

bfs_bench_begin "$repo"
BFS_APT_PACKAGES=(restic rclone)
bfs_ensure_packages
echo "restic: $(restic version | head -n 1)"
echo "rclone: $(rclone version | head -n 1)"

# Every file is scanned, the large ones too: clamd and backupfs take streams that long.
SCAN_MAX_MIB=$((LARGE_MIB > 16 ? LARGE_MIB + 16 : 32))
export BFS_CLAMD_STREAM_MAX=${SCAN_MAX_MIB}M BFS_CLAMD_SCAN_MAX=${SCAN_MAX_MIB}M
METRICS_PORT=$(bfs_free_port)
bfs_bench_setup backup "127.0.0.1:$METRICS_PORT"
for bucket in restic rclone; do
    code=$(bfs_s3_curl -o /dev/null -w '%{http_code}' -X PUT "$BFS_S3_ENDPOINT/$bucket")
    [[ $code == 200 ]] || {
        bfs_err "CreateBucket $bucket failed (HTTP $code)"
        exit 1
    }
done

CORPUS=$WORK/corpus
echo "writing the corpus into $CORPUS"
python3 - "$CORPUS" "$SMALL" "$MEDIUM" "$LARGE_MIB" <<'PY'
import os, random, sys

root, small, medium, large_mib = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rng = random.Random(8)
words = ("report budget meeting client invoice project quarterly minutes review plan "
         "office travel account summary schedule notes draft final agenda update").split()

def text(n):
    out, size = [], 0
    while size < n:
        line = " ".join(rng.choice(words) for _ in range(12)) + ".\n"
        out.append(line)
        size += len(line)
    return "".join(out).encode()[:n]

def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)

made = []
for i in range(small):
    path = os.path.join(root, f"d{i % 200:03d}", f"small{i:05d}")
    if i % 10 == 9 and made:
        data = rng.choice(made)  # an exact copy of an earlier file
    else:
        n = rng.randint(1 << 10, 64 << 10)
        data = text(n) if i % 2 == 0 else rng.randbytes(n)
        made.append(data)
    write(path + (".txt" if data[:1].isascii() and data[:1].isalpha() else ".bin"), data)
for i in range(medium):
    n = rng.randint(1 << 20, 16 << 20)
    data = text(n) if i % 2 == 0 else rng.randbytes(n)
    write(os.path.join(root, f"d{i % 200:03d}", f"medium{i:03d}.dat"), data)
chunk = 1 << 20
with open(os.path.join(root, "large-random.bin"), "wb") as f:
    for _ in range(large_mib):
        f.write(rng.randbytes(chunk))
block = text(chunk)
with open(os.path.join(root, "large-text.txt"), "wb") as f:
    for _ in range(large_mib):
        f.write(block)
PY
files=$(find "$CORPUS" -type f | wc -l)
bytes=$(du -sb "$CORPUS" | cut -f1)
echo "corpus: $files files, $((bytes / 1000000)) MB, $(find "$CORPUS" -type d | wc -l) directories"
sync

RESULTS=$WORK/results
: >"$RESULTS"
LOGS=${BENCH_BACKUP_LOGS:-$repo/target/bench-backup}
rm -rf -- "$LOGS" && mkdir -p "$LOGS"
# Whatever way the run ends, the logs so far are kept.
keep_logs() {
    cp -- "$WORK"/*.log "$WORK"/daemon-*.out "$WORK"/backupfs-*.toml "$LOGS"/ 2>/dev/null
    cp -- "$WORK/logs/backup_pipeline.log" "$LOGS"/ 2>/dev/null
    return 0
}
FLOOR_CLAMD=""
trap 'rc=$?; set +e; keep_logs; bfs_stop_pid "$FLOOR_CLAMD"; (exit $rc); bfs_bench_cleanup' EXIT

# record CASE TOOL WALL CPU RSS_KIB
record() {
    printf '%s\t%s\t%s\t%s\t%s\n' "$@" >>"$RESULTS"
}

# timed CASE TOOL COMMAND...: runs COMMAND under /usr/bin/time and records it.
timed() {
    local case=$1 tool=$2
    shift 2
    local out=$WORK/time.out start end s3_before
    s3_before=$(cpu_of "$BFS_S3_PID")
    start=$(date +%s.%N)
    /usr/bin/time -f '%U %S %M' -o "$out" "$@" >"$WORK/$tool-$case.log" 2>&1 || {
        bfs_err "$tool ($case) failed:"
        tail -n 20 "$WORK/$tool-$case.log" >&2
        exit 1
    }
    end=$(date +%s.%N)
    read -r user sys rss <"$out"
    record "$case" "$tool" "$(awk -v a="$start" -v b="$end" 'BEGIN {print b - a}')" \
        "$(awk -v u="$user" -v s="$sys" 'BEGIN {print u + s}')" "$rss"
    record_server_cpu "$case" "$s3_before"
}

metric() {
    curl -s "http://127.0.0.1:$METRICS_PORT/metrics" |
        awk -v m="$1" '$1 == m {v = $2} END {print (v == "" ? "-1" : v)}'
}

# cpu_of PID: the CPU seconds PID has used so far (user + system).
cpu_of() {
    awk '{printf "%.2f", ($14 + $15) / 100}' "/proc/$1/stat"
}

# record_server_cpu CASE S3_BEFORE [CLAMD_BEFORE]: rows for what the servers spent since.
record_server_cpu() {
    if [[ -n ${3:-} ]]; then
        record "$1" "  clamd (its CPU)" "-" \
            "$(awk -v a="$3" -v b="$(cpu_of "$BFS_CLAMD_PID")" 'BEGIN {print b - a}')" "-"
    fi
    record "$1" "  s3s-fs (its CPU)" "-" \
        "$(awk -v a="$2" -v b="$(cpu_of "$BFS_S3_PID")" 'BEGIN {print b - a}')" "-"
}

# files_done: how many files the running daemon has finished, whatever the outcome.
files_done() {
    curl -s "http://127.0.0.1:$METRICS_PORT/metrics" |
        awk '$1 ~ /^backupfs_files_total[{]/ {n += $2} END {printf "%d", n}'
}

# backupfs CASE SOURCE PREFIX EXPECTED [FEED]: mounts SOURCE, backing up to PREFIX with the
# state directory state-PREFIX, runs FEED (a command writing into the mount) if given,
# waits until EXPECTED files are done, the queue is empty and nothing is in flight, stops
# the daemon and records it.
backupfs_run() {
    local case=$1 source=$2 prefix=$3 expected=$4 feed=${5:-}
    local conf=$WORK/backupfs-$case.toml out=$WORK/time.out start end clamd_before s3_before
    sed -e "s|^source = .*|source = \"$source\"|" \
        -e "s|^prefix = .*|prefix = \"$prefix\"|" \
        -e "s|^dir = \"state\"|dir = \"state-$prefix\"|" \
        -e "s|^max-stream-size = .*|max-stream-size = \"${SCAN_MAX_MIB}MiB\"|" \
        -e "s|^allowed = .*|allowed = [\"s3://backups/$prefix\"]|" \
        "$WORK/backupfs.toml" >"$conf"
    if [[ -n ${BENCH_BACKUP_WORKERS:-} ]]; then
        printf '[pipeline]\nworkers = %s\n' "$BENCH_BACKUP_WORKERS" >>"$conf"
    fi
    grep -q "^dir = \"state-$prefix\"" "$conf" && grep -q "^max-stream-size = \"${SCAN_MAX_MIB}MiB\"" "$conf" || {
        bfs_err "could not write $conf"
        exit 1
    }
    clamd_before=$(cpu_of "$BFS_CLAMD_PID")
    s3_before=$(cpu_of "$BFS_S3_PID")
    start=$(date +%s.%N)
    /usr/bin/time -f '%U %S %M' -o "$out" "$BIN" mount --config "$conf" \
        >>"$WORK/daemon-$case.out" 2>&1 &
    TIME_PID=$!
    for _ in $(seq 1 50); do
        DAEMON_PID=$(pgrep -P "$TIME_PID" | head -n 1) && break
        sleep 0.1
    done
    [[ -n $DAEMON_PID ]] || {
        bfs_err "backupfs did not start"
        exit 1
    }
    for _ in $(seq 1 600); do
        awk -v m="$WORK/mnt" '$2 == m {f=1} END {exit !f}' /proc/mounts && break
        bfs_pid_alive "$DAEMON_PID" || {
            bfs_err "backupfs exited during start"
            tail -n 20 "$WORK/daemon-$case.out" >&2
            exit 1
        }
        sleep 0.1
    done
    if [[ -n $feed ]]; then
        eval "$feed"
    fi
    while :; do
        sleep 0.1
        (($(files_done) >= expected)) || continue
        [[ $(metric backupfs_catchup_running) == 0 && $(metric backupfs_queue_depth) == 0 &&
            $(metric backupfs_in_flight) == 0 ]] && break
    done
    echo "  backupfs ($case): $(curl -s "http://127.0.0.1:$METRICS_PORT/metrics" |
        awk '$1 ~ /^backupfs_files_total/ && $2 > 0 {sub(/.*outcome="/, "", $1); sub(/".*/, "", $1); printf "%s %d  ", $1, $2}')"
    kill -TERM "$DAEMON_PID"
    wait "$TIME_PID" || {
        bfs_err "backupfs ($case) did not exit cleanly"
        tail -n 20 "$WORK/daemon-$case.out" >&2
        exit 1
    }
    DAEMON_PID="" TIME_PID=""
    end=$(date +%s.%N)
    read -r user sys rss <"$out"
    record "$case" backupfs "$(awk -v a="$start" -v b="$end" 'BEGIN {print b - a}')" \
        "$(awk -v u="$user" -v s="$sys" 'BEGIN {print u + s}')" "$rss"
    record_server_cpu "$case" "$s3_before" "$clamd_before"
}

export RESTIC_PASSWORD
RESTIC_PASSWORD=$(head -c 18 /dev/urandom | base64)
export RCLONE_CONFIG_S3_TYPE=s3 RCLONE_CONFIG_S3_PROVIDER=Other
export RCLONE_CONFIG_S3_ENDPOINT=$BFS_S3_ENDPOINT
export RCLONE_CONFIG_S3_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID
export RCLONE_CONFIG_S3_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY
export RCLONE_CONFIG_S3_REGION=$BFS_S3_REGION RCLONE_CONFIG_S3_FORCE_PATH_STYLE=true
# The crypt remote is the whole bucket: s3s-fs answers a HEAD of a key that is a
# "directory" (rclone's check of a sub-path on start) with 500, which rclone retries for
# 90 s on every run after the first.
export RCLONE_CONFIG_CRYPT_TYPE=crypt RCLONE_CONFIG_CRYPT_REMOTE=s3:rclone
RCLONE_CONFIG_CRYPT_PASSWORD=$(rclone obscure "$(head -c 18 /dev/urandom | base64)")
export RCLONE_CONFIG_CRYPT_PASSWORD
# rclone's S3 client refuses a custom CA bundle (some machines set one); the server here
# speaks plain HTTP on loopback anyway. No config file is read or written.
export RCLONE_CONFIG=/dev/null

# The floor clamd sets: a fresh clamd (nothing cached) scanning the corpus on its own, all
# its threads busy, each file handed over as backupfs does (clamdscan --fdpass -m).
echo "clamd alone: a fresh clamd scanning the corpus"
main_clamd=("$BFS_CLAMD_PID" "$BFS_CLAMD_SOCKET" "$BFS_CLAMD_CONF" "$BFS_CLAMD_LOG" "${BFS_CLAMD_TCP:-}")
bfs_start_clamd "$WORK/clamd-floor" >/dev/null
FLOOR_CLAMD=$BFS_CLAMD_PID
read -r BFS_CLAMD_PID BFS_CLAMD_SOCKET BFS_CLAMD_CONF BFS_CLAMD_LOG BFS_CLAMD_TCP <<<"${main_clamd[*]}"
floor_before=$(cpu_of "$FLOOR_CLAMD")
start=$(date +%s.%N)
clamdscan -c "$WORK/clamd-floor/clamd.conf" --fdpass -m --no-summary "$CORPUS" \
    >"$WORK/clamdscan-cold.log" 2>&1 || {
    bfs_err "clamdscan failed:"
    tail -n 20 "$WORK/clamdscan-cold.log" >&2
    exit 1
}
record cold "clamd alone" "$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN {print b - a}')" \
    "$(awk -v a="$floor_before" -v b="$(cpu_of "$FLOOR_CLAMD")" 'BEGIN {print b - a}')" "-"
bfs_stop_pid "$FLOOR_CLAMD"
FLOOR_CLAMD=""

PEERS=${BENCH_BACKUP_PEERS:-1}
echo "case 1: cold backup of the corpus"
backupfs_run cold "$CORPUS" cold "$files"
if ((PEERS)); then
    restic -r "s3:$BFS_S3_ENDPOINT/restic/cold" init >/dev/null
    timed cold restic restic -r "s3:$BFS_S3_ENDPOINT/restic/cold" backup "$CORPUS"
    timed cold rclone-crypt env -u AWS_CA_BUNDLE rclone copy "$CORPUS" crypt:
fi

echo "case 3: re-run with nothing changed"
backupfs_run rerun "$CORPUS" cold 0
if ((PEERS)); then
    timed rerun restic restic -r "s3:$BFS_S3_ENDPOINT/restic/cold" backup "$CORPUS"
    timed rerun rclone-crypt env -u AWS_CA_BUNDLE rclone copy "$CORPUS" crypt:
fi

echo "case 2: live copy"
mkdir -p "$WORK/live" "$WORK/plain"
backupfs_run live "$WORK/live" live "$files" "cp -r '$CORPUS/.' '$WORK/mnt/'"
if ((PEERS)); then
    restic -r "s3:$BFS_S3_ENDPOINT/restic/live" init >/dev/null
    timed live "cp -r + restic" bash -c "cp -r '$CORPUS/.' '$WORK/plain/' &&
        restic -r 's3:$BFS_S3_ENDPOINT/restic/live' backup '$WORK/plain'"
fi

printf '\n%s files, %s MB; one loopback s3s-fs; %s cores\n' "$files" "$((bytes / 1000000))" "$(nproc)"
# The re-run's catch-up alone, from the daemon's log: the walk that finds nothing changed,
# without the daemon's start and its last catalog write on stop.
echo "backupfs re-run: catch-up $(grep 'catch-up finished' "$WORK/logs/backup_pipeline.log" |
    sed -n 2p | sed -E 's/.*seconds=([0-9.e-]+).*/\1/') s of the wall time below"
printf '%-7s %-18s %9s %9s %10s %14s\n' case tool "wall s" "CPU s" "RSS MiB" "backupfs/this"
awk -F '\t' '
    { c[NR] = $1; t[NR] = $2; w[NR] = $3; u[NR] = $4; r[NR] = $5
      if ($2 == "backupfs") ours[$1] = $3 }
    END {
        for (i = 1; i <= NR; i++) {
            ratio = (w[i] == "-" || t[i] == "backupfs") ? "" : sprintf("%.2f", ours[c[i]] / w[i])
            wall = w[i] == "-" ? "-" : sprintf("%.1f", w[i])
            rss = r[i] == "-" ? "-" : sprintf("%.0f", r[i] / 1024)
            printf "%-7s %-18s %9s %9.1f %10s %14s\n", c[i], t[i], wall, u[i], rss, ratio
        }
    }' "$RESULTS"
