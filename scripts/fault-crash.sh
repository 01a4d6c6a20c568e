#!/usr/bin/env bash
#
# scripts/fault-crash.sh - the long crash test: write FILES files of mixed sizes into a
# mount, kill -9 the daemon at KILLS random moments while it backs them up (restarting it
# each time), then check that every file's latest content is in the bucket: each object is
# fetched over S3 and decrypted with gpg and zstd.
#
# Usage (as root, after scripts/test.sh has installed the prerequisites once):
#
#     bash scripts/fault-crash.sh [FILES] [KILLS]      # default 1000 files, 20 kills
#
# BACKUPFS_TEST_SEED=N repeats a run. It runs the same test as CI
# (tests/faults.rs: kill_minus_nine_at_random_moments_loses_nothing), scaled up, with an
# optimised build, and prints "files: N, kills: K (...), files lost: 0" when it passes.

set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib/services.sh
. "$repo/scripts/lib/services.sh"

export AWS_EC2_METADATA_DISABLED=true
export BACKUPFS_CRASH_FILES=${1:-1000}
export BACKUPFS_CRASH_KILLS=${2:-20}
export BACKUPFS_TEST_CONFIG_DIR=$repo/config
BACKUPFS_TEST_S3S_FS=${BACKUPFS_TEST_S3S_FS:-$(bfs_find_s3s_fs)}
export BACKUPFS_TEST_S3S_FS

cd "$repo"
cargo test --release --test faults kill_minus_nine_at_random_moments_loses_nothing -- --nocapture 2>&1 |
    grep -E 'seed|kill -9|files lost|test result|panicked|timed out'
