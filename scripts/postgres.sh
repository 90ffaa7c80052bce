#!/bin/sh
# A private, throw-away PostgreSQL cluster for the test suite (Unix socket only, no TCP).
#   scripts/postgres.sh start DIR   -> prints the DATABASE_URL to use
#   scripts/postgres.sh stop DIR
set -eu
action=${1:?start or stop}
dir=${2:?cluster directory}
bindir=$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n 1)
[ -n "$bindir" ] || { echo "postgres.sh: PostgreSQL server binaries not found" >&2; exit 1; }
port=54329
case "$action" in
start)
    mkdir -p "$dir/socket"
    chown -R postgres:postgres "$dir"
    if [ ! -f "$dir/data/PG_VERSION" ]; then
        su postgres -c "'$bindir/initdb' -D '$dir/data' -A trust -U postgres" >"$dir/initdb.log" 2>&1
    fi
    su postgres -c "'$bindir/pg_ctl' -D '$dir/data' -l '$dir/server.log' -w \
        -o \"-k '$dir/socket' -p $port -c listen_addresses='' -c fsync=off -c max_connections=200\" start" >/dev/null
    su postgres -c "'$bindir/psql' -h '$dir/socket' -p $port -U postgres -qAtc \"SELECT 1 FROM pg_database WHERE datname='privnet_test'\"" \
        | grep -q 1 || su postgres -c "'$bindir/createdb' -h '$dir/socket' -p $port -U postgres privnet_test"
    echo "postgresql+psycopg://postgres@/privnet_test?host=$dir/socket&port=$port"
    ;;
stop)
    [ -f "$dir/data/postmaster.pid" ] && su postgres -c "'$bindir/pg_ctl' -D '$dir/data' -m fast -w stop" >/dev/null
    rm -rf "$dir"
    ;;
*) echo "usage: $0 start|stop DIR" >&2; exit 2 ;;
esac
