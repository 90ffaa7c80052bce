#!/bin/sh
# The whole check: lint, the suite on SQLite, then the database tests again on PostgreSQL.
# Under CI=true nothing may skip: missing capabilities fail the tests that need them.
set -eu
cd "$(dirname "$0")/.."
python=.venv/bin/python

"$python" -m ruff check .

echo "== pytest on SQLite (all but the PostgreSQL-only race tests)"
"$python" -m pytest -m "not postgres" "$@"

if ! find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null | grep -q . || [ "$(id -u)" -ne 0 ]; then
    if [ "${CI:-}" = true ]; then
        echo "CI=true but PostgreSQL cannot be started here" >&2
        exit 1
    fi
    echo "== PostgreSQL not installed (or not root): skipping the PostgreSQL run"
    exit 0
fi
cluster=$(mktemp -d /tmp/privnet-test-pg.XXXXXX)
trap 'scripts/postgres.sh stop "$cluster"' EXIT INT TERM
url=$(scripts/postgres.sh start "$cluster")
echo "== pytest on PostgreSQL (the tests that use the app's database; the lab runs its own SQLite)"
TEST_DATABASE_URL="$url" "$python" -m pytest -m "not lab" tests/webapp tests/test_migrations.py "$@"
