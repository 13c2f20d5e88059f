#!/usr/bin/env bash
# scripts/setup.sh — installs what building and testing odsync needs on a fresh Debian 12 machine
# (run as root). Idempotent: when every package is already installed, apt is not touched.
# Also creates the unprivileged system user the test PostgreSQL and MariaDB servers run as
# (odsync-test).
set -euo pipefail

PACKAGES=(
  build-essential cmake pkg-config
  libpq-dev libsqlite3-dev libyaml-dev libssl-dev libpcre2-dev
  postgresql postgresql-contrib sqlite3
  libcurl4-openssl-dev zlib1g-dev libhiredis-dev curl
  libzstd-dev liblz4-dev # spools: block compression
  clickhouse-server clickhouse-client redis-server redis-tools
  mariadb-server mariadb-client libmariadb-dev
  valgrind procps perl-base util-linux passwd coreutils findutils grep sed mawk
  iproute2 mount # tests/chaos: network namespaces with a veth pair, tmpfs mounts
  libmicrohttpd-dev libcurl4-openssl-dev curl prometheus chromium python3
  libjwt-dev libjansson-dev openssl # admin API JWTs, the http ingest source's JSON; test certificates (docs/SECURITY.md)
  postgresql-server-dev-15 # the mesh's output plugin odsync_pgoutput (src/pgplugin): server headers
  bzip2 tar apt # pg_regress_workload: apt-get source postgresql-15 (private apt state), unpack its tests
)
TEST_USER=odsync-test

if [[ $(id -u) -ne 0 ]]; then
  echo "setup.sh: must run as root (installs packages, creates user $TEST_USER)" >&2
  exit 1
fi

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg -s "$p" 2>/dev/null | grep -q '^Status: install ok installed'; then missing+=("$p"); fi
done

if [[ ${#missing[@]} -gt 0 ]]; then
  echo "setup.sh: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "setup.sh: all packages present"
fi

# The Debian postgresql, clickhouse-server and redis-server packages may start servers of their
# own through their service scripts; tests never use them (they start throwaway servers on free
# ports), so they are left alone.

if ! id -u "$TEST_USER" >/dev/null 2>&1; then
  useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$TEST_USER"
  echo "setup.sh: created system user $TEST_USER"
fi

bindir=$(pg_config --bindir 2>/dev/null || true)
if [[ -z "$bindir" || ! -x "$bindir/initdb" ]]; then
  bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
fi
if [[ -z "$bindir" || ! -x "$bindir/initdb" ]]; then
  echo "setup.sh: PostgreSQL server binaries not found after install" >&2
  exit 1
fi
echo "setup.sh: ok (PostgreSQL binaries in $bindir)"
