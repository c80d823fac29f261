#!/usr/bin/env bash
# A throwaway PostgreSQL cluster on loopback, for Loupe's Postgres tests (test/postgres.int.test.ts).
#
#   scripts/pg-test-cluster.sh CMD [ARGS...]  start a cluster, run CMD with LOUPE_TEST_DATABASE_URL set, stop it
#   scripts/pg-test-cluster.sh                start a cluster, print LOUPE_TEST_DATABASE_URL=..., keep it until
#                                             Ctrl-C, SIGTERM or end of stdin, then stop it
#   scripts/pg-test-cluster.sh --check        exit 0 if PostgreSQL's server binaries are installed, else 3
#
# The cluster lives in a temporary directory, listens on 127.0.0.1 only, on a free port, with trust
# authentication, fsync off (it is thrown away). Run as root, the server runs as the `postgres`
# user (or `nobody`), since PostgreSQL refuses to run as root.
# Needs the server binaries (Debian: apt-get install postgresql); PG_BIN=/path/to/bin picks others.
set -euo pipefail

find_bin() {
  local dir
  if [[ -n "${PG_BIN:-}" ]]; then
    [[ -x "$PG_BIN/initdb" ]] && { echo "$PG_BIN"; return 0; }
    return 1
  fi
  for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    [[ -x "$dir/initdb" && -x "$dir/pg_ctl" ]] && { echo "$dir"; return 0; }
  done
  if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
    dirname "$(readlink -f "$(command -v initdb)")"
    return 0
  fi
  return 1
}

if ! BIN="$(find_bin)"; then
  [[ "${1:-}" == "--check" ]] && exit 3
  echo "pg-test-cluster: no PostgreSQL server binaries (initdb, pg_ctl) found; install them (Debian: apt-get install postgresql) or set PG_BIN" >&2
  exit 3
fi
[[ "${1:-}" == "--check" ]] && exit 0

# PostgreSQL refuses to run as root: use an unprivileged account for the server.
as_user=()
owner=""
if [[ "$(id -u)" == "0" ]]; then
  owner="$(id -u postgres >/dev/null 2>&1 && echo postgres || echo nobody)"
  if command -v runuser >/dev/null 2>&1; then as_user=(runuser -u "$owner" --); else as_user=(setpriv --reuid="$owner" --regid="$(id -g "$owner")" --clear-groups --); fi
fi

dir="$(mktemp -d "${TMPDIR:-/tmp}/loupe-pg.XXXXXX")"
chmod 700 "$dir"
[[ -n "$owner" ]] && chown "$owner" "$dir"

started=""
waiter=""
cleanup() {
  trap - EXIT INT TERM
  [[ -n "$waiter" ]] && kill "$waiter" 2>/dev/null || true
  if [[ -n "$started" ]]; then
    (cd "$dir" && "${as_user[@]}" "$BIN/pg_ctl" -D "$dir/data" -m immediate -s stop >/dev/null 2>&1) || true
  fi
  rm -rf "$dir"
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT
trap 'cleanup; exit 143' TERM

free_port() {
  node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}

(cd "$dir" && "${as_user[@]}" "$BIN/initdb" -D "$dir/data" -U loupe -A trust -E UTF8 --locale=C --no-sync >"$dir/initdb.log" 2>&1) || {
  echo "pg-test-cluster: initdb failed:" >&2
  cat "$dir/initdb.log" >&2
  exit 1
}

port=""
for _ in 1 2 3 4 5; do
  candidate="$(free_port)"
  if (cd "$dir" && "${as_user[@]}" "$BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 -s \
    -o "-h 127.0.0.1 -p $candidate -k $dir -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" start >/dev/null 2>&1); then
    port="$candidate"
    started=1
    break
  fi
done
if [[ -z "$port" ]]; then
  echo "pg-test-cluster: the server did not start; its log:" >&2
  tail -n 20 "$dir/server.log" >&2 || true
  exit 1
fi

export LOUPE_TEST_DATABASE_URL="postgres://loupe@127.0.0.1:$port/postgres"

if [[ $# -gt 0 ]]; then
  set +e
  "$@"
  status=$?
  set -e
  exit "$status"
fi

echo "LOUPE_TEST_DATABASE_URL=$LOUPE_TEST_DATABASE_URL"
# Until stdin ends (e.g. the test process that started this one exits) or a signal arrives.
exec 3<&0
cat <&3 >/dev/null &
waiter=$!
wait "$waiter" || true
waiter=""
