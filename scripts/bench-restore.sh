#!/usr/bin/env bash
#
# scripts/bench-restore.sh - how long `backupfs restore` takes to bring back a tree from the
# (loopback) bucket, against `cp -a` of the same tree on the native filesystem, in the
# same run.
#
# Usage (as root):
#
#     bash scripts/bench-restore.sh [FILES]      # default 2000
#
# It writes FILES files (1 KiB to 64 KiB, plus one 8 MiB file per 200) into a source
# directory, mounts so that catch-up backs them all up, waits until the catalog in the
# bucket lists them, stops the mount, and then times a restore of everything into a new
# directory (checking every file against the original) and `cp -a` of the source.
# Environment: BACKUPFS_BENCH_NO_BUILD=1 uses the existing target/release/backupfs;
# BACKUPFS_RESTORE_JOBS sets restore --jobs (default 16).

set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib/services.sh
. "$repo/scripts/lib/services.sh"

FILES=${1:-2000}

bfs_bench_begin "$repo"

bfs_bench_setup restore "" '[catalog]
flush-interval = "1s"'

echo "writing $FILES files into the source directory"
python3 - "$WORK/source" "$FILES" <<'PY'
import os, random, sys
root, n = sys.argv[1], int(sys.argv[2])
rng = random.Random(7)
for i in range(n):
    d = os.path.join(root, f"d{i % 50:02d}", f"s{i % 7}")
    os.makedirs(d, exist_ok=True)
    size = 8 << 20 if i % 200 == 0 else rng.randint(1 << 10, 64 << 10)
    with open(os.path.join(d, f"f{i:06d}.bin"), "wb") as f:
        f.write(rng.randbytes(size))
PY
bytes=$(du -sb "$WORK/source" | cut -f1)

echo "backing up (catch-up on first mount)"
"$BIN" mount --config "$WORK/backupfs.toml" >>"$WORK/daemon.out" 2>&1 &
DAEMON_PID=$!
started=$(date +%s)
# Files only: directories are listed too, with a trailing /.
until [[ $("$BIN" ls --config "$WORK/backupfs.toml" 2>/dev/null | grep -vc '/$') -ge $FILES ]]; do
    if ! bfs_pid_alive "$DAEMON_PID"; then
        bfs_err "backupfs exited"
        tail -n 20 "$WORK/daemon.out" >&2
        exit 1
    fi
    sleep 2
done
echo "  all $FILES files in the bucket's catalog after $(($(date +%s) - started)) s"
bfs_stop_pid "$DAEMON_PID" 60
DAEMON_PID=""

seconds() { python3 -c 'import time; print(f"{time.monotonic():.3f}")'; }
t0=$(seconds)
/usr/bin/time -f 'restore: %e s elapsed, %U s user, %S s system, %M KiB peak RSS' \
    "$BIN" restore --config "$WORK/backupfs.toml" --jobs "${BACKUPFS_RESTORE_JOBS:-16}" \
    --to "$WORK/restored" / >"$WORK/restore.out" 2>"$WORK/restore.err"
tail -n 1 "$WORK/restore.err"
t1=$(seconds)
cp -a "$WORK/source" "$WORK/copied"
sync
t2=$(seconds)
tail -n 1 "$WORK/restore.out"
if ! diff -r "$WORK/source" "$WORK/restored" >/dev/null; then
    bfs_err "the restored tree differs from the source"
    exit 1
fi
python3 - "$t0" "$t1" "$t2" "$FILES" "$bytes" <<'PY'
import sys
t0, t1, t2, files, size = map(float, sys.argv[1:])
restore, cp = t1 - t0, t2 - t1
print(f"restore of {int(files)} files ({size / 2**20:.0f} MiB) from the loopback bucket: {restore:.2f} s"
      f" ({size / 2**20 / restore:.1f} MiB/s, {files / restore:.0f} files/s)")
print(f"cp -a of the same tree on the native filesystem:      {cp:.2f} s")
print(f"ratio restore / cp -a: {restore / cp:.1f}")
PY
