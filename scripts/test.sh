#!/usr/bin/env bash
#
# scripts/test.sh - the full check run by CI (.ci/run) and by developers.
#
# Usage (as root, on Debian 12, from anywhere):
#
#     bash scripts/test.sh
#
# What it does:
#   1. installs missing Debian packages (fuse3, clamav-daemon, clamdscan, gnupg,
#      zstd, curl, clang, libclang-dev, nettle-dev, pkg-config, prometheus, time,
#      poppler-utils, ...)
#      s3s-fs (the local S3 server used by the integration tests) and pjdfstest
#      (the POSIX suite run against the mount);
#   2. checks that /dev/fuse exists and that we run as root (FUSE mounts);
#   3. runs cargo fmt --check, cargo clippy -D warnings and cargo test.
#
# The integration tests start their own clamd and s3s-fs on unix sockets and
# free 127.0.0.1 ports.  They find their tools through these variables
# (exported below; override them if needed):
#   BACKUPFS_TEST_CONFIG_DIR  repo config dir (ClamAV test signatures in clamav/)
#   BACKUPFS_TEST_S3S_FS      path of the s3s-fs binary
#   BACKUPFS_TEST_PJDFSTEST   path of the pjdfstest binary
#   BACKUPFS_TEST_CLAMD       path of the clamd binary
# No network traffic leaves 127.0.0.1 (AWS_EC2_METADATA_DISABLED=true).
#
# Exits non-zero on the first failing step.

set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

# shellcheck source=scripts/lib/services.sh
. "$repo/scripts/lib/services.sh"

step() {
    printf '\n==> %s\n' "$*" >&2
}

if [[ $(id -u) -ne 0 ]]; then
    bfs_err "scripts/test.sh must run as root (it installs packages and the tests mount FUSE file systems)"
    exit 1
fi

export AWS_EC2_METADATA_DISABLED=true
cargo_bin=${CARGO_HOME:-$HOME/.cargo}/bin
case ":$PATH:" in
*":$cargo_bin:"*) ;;
*) export PATH="$cargo_bin:$PATH" ;;
esac

step "checking system packages"
bfs_ensure_packages
bfs_ensure_rust
step "checking s3s-fs and pjdfstest"
bfs_ensure_s3s_fs
bfs_ensure_pjdfstest

step "checking /dev/fuse"
if [[ ! -c /dev/fuse ]]; then
    modprobe fuse 2>/dev/null || true
fi
if [[ ! -c /dev/fuse ]]; then
    bfs_err "/dev/fuse is missing: load the fuse kernel module (modprobe fuse); in a container run with --device /dev/fuse --cap-add SYS_ADMIN"
    exit 1
fi
if ! command -v fusermount3 >/dev/null 2>&1; then
    bfs_err "fusermount3 not found (package fuse3)"
    exit 1
fi

export BACKUPFS_TEST_CONFIG_DIR=${BACKUPFS_TEST_CONFIG_DIR:-$repo/config}
BACKUPFS_TEST_S3S_FS=${BACKUPFS_TEST_S3S_FS:-$(bfs_find_s3s_fs)}
export BACKUPFS_TEST_S3S_FS
BACKUPFS_TEST_PJDFSTEST=${BACKUPFS_TEST_PJDFSTEST:-$(bfs_find_cargo_tool pjdfstest)}
export BACKUPFS_TEST_PJDFSTEST
if [[ -z ${BACKUPFS_TEST_CLAMD:-} ]]; then
    BACKUPFS_TEST_CLAMD=$(command -v clamd 2>/dev/null || echo /usr/sbin/clamd)
fi
export BACKUPFS_TEST_CLAMD
if [[ ! -x $BACKUPFS_TEST_CLAMD ]]; then
    bfs_err "clamd not found at $BACKUPFS_TEST_CLAMD (package clamav-daemon)"
    exit 1
fi
bfs_log "config dir: $BACKUPFS_TEST_CONFIG_DIR"
bfs_log "s3s-fs:     $BACKUPFS_TEST_S3S_FS"
bfs_log "clamd:      $BACKUPFS_TEST_CLAMD"

step "cargo fmt --all -- --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -- -D warnings

step "cargo test --all-targets -- --test-threads=2"
cargo test --all-targets -- --test-threads=2

step "all checks passed"
