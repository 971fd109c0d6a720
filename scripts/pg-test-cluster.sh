#!/usr/bin/env bash
# A throwaway PostgreSQL server on loopback for the PostgreSQL test suites and benchmarks, from
# Debian's `postgresql` package (no Docker, no download).
#
#   eval "$(scripts/pg-test-cluster.sh start)"   # exports BATCHD_TEST_DATABASE_URL and PGTEST_DIR
#   scripts/pg-test-cluster.sh stop "$PGTEST_DIR"
#
# `start` initialises a cluster in a new temporary directory (as the `postgres` user when run as
# root: initdb refuses root), with trust authentication on 127.0.0.1 only, on a free port. Set
# PGTEST_FAST=1 to turn fsync off: the suites kill batchd processes, never PostgreSQL, so they do
# not need its durability, and creating a database per test gets much cheaper.
set -euo pipefail

bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
  echo "no PostgreSQL server found under /usr/lib/postgresql (apt-get install postgresql)" >&2
  exit 1
fi
as=()
if [ "$(id -u)" = 0 ]; then
  as=(runuser -u postgres --)
fi

case "${1:-start}" in
  start)
    dir=$(mktemp -d /tmp/batchd-pg.XXXXXX)
    chmod 755 "$dir"
    [ "$(id -u)" = 0 ] && chown postgres "$dir"
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    opts="-c listen_addresses=127.0.0.1 -p $port -k $dir -c max_connections=400"
    if [ "${PGTEST_FAST:-0}" = 1 ]; then
      opts="$opts -c fsync=off -c full_page_writes=off"
    fi
    "${as[@]}" "$bin/initdb" -D "$dir/data" -A trust -U postgres >"$dir/initdb.log" 2>&1 \
      || { cat "$dir/initdb.log" >&2; exit 1; }
    "${as[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -o "$opts" start >/dev/null \
      || { cat "$dir/server.log" >&2; exit 1; }
    echo "export BATCHD_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:$port/postgres PGTEST_DIR=$dir"
    ;;
  stop)
    dir=${2:?usage: $0 stop DIR}
    "${as[@]}" "$bin/pg_ctl" -D "$dir/data" -m fast stop >/dev/null || true
    rm -rf "$dir"
    ;;
  *)
    echo "usage: $0 start | stop DIR" >&2
    exit 2
    ;;
esac
