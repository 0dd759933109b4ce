# shellcheck shell=bash
# Start a throwaway PostgreSQL server for the test suite.  Source it from bash:
#
#     source scripts/throwaway-postgres.sh
#
# It initialises a fresh cluster in a temporary directory, starts it on a free
# loopback port, exports
#
#     BILLBRIDGE_TEST_POSTGRES_URL=postgresql://postgres@127.0.0.1:PORT/postgres
#
# (an admin URL with trust auth: tests create and drop their own databases through
# it) and registers an EXIT trap, chained in front of any existing one, that stops
# the server and deletes its directory.  Prints one line on success; on failure
# prints why and returns 1.  Sourcing it again in the same shell reuses the server.
#
# Server binaries: the newest /usr/lib/postgresql/*/bin.  If there are none and we
# are root (or have passwordless sudo), Debian's `postgresql` package is installed.
# PostgreSQL refuses to run as root, so as root the server runs as the `postgres`
# OS user (created if missing).  Safe to source under `set -euo pipefail`.

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    echo "throwaway-postgres: source this file, don't execute it" >&2
    exit 2
fi

_bb_pg_say() { echo "throwaway-postgres: $*" >&2; }

# Newest PostgreSQL server bin directory, or nothing.
_bb_pg_find_bindir() {
    local dir
    dir=$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
    if [[ -x "$dir/initdb" && -x "$dir/pg_ctl" && -x "$dir/postgres" ]]; then
        echo "$dir"
    fi
}

# Run a command as the server's OS user (postgres when we are root).  From / so
# that the postgres user does not trip over an unreadable current directory.
_bb_pg_run() {
    if [[ $EUID -eq 0 ]]; then
        (cd / && runuser -u postgres -- "$@")
    else
        "$@"
    fi
}

# EXIT trap body: stop the server and remove its directory.  Keeps $? intact for
# whatever trap command was chained after it.
_bb_pg_stop() {
    local rc=$?
    if [[ -n "${_BB_PG_BASE:-}" ]]; then
        if ! _bb_pg_run "$_BB_PG_BINDIR/pg_ctl" -D "$_BB_PG_BASE/data" -m fast -w -t 30 stop \
            >/dev/null 2>&1; then
            # Still running (or stop timed out): kill the postmaster outright.
            local pid
            pid=$(head -n 1 "$_BB_PG_BASE/data/postmaster.pid" 2>/dev/null) || pid=
            [[ -n "$pid" ]] && kill -KILL "$pid" 2>/dev/null || true
        fi
        rm -rf -- "$_BB_PG_BASE"
        _BB_PG_BASE=
    fi
    return "$rc"
}

_bb_pg_start() {
    local bindir base port attempt version prev sudo=""

    # Already started by an earlier `source` in this shell and still up: reuse it.
    if [[ -n "${_BB_PG_BASE:-}" ]] \
        && _bb_pg_run "$_BB_PG_BINDIR/pg_ctl" -D "$_BB_PG_BASE/data" status >/dev/null 2>&1; then
        export BILLBRIDGE_TEST_POSTGRES_URL="$_BB_PG_URL"
        _bb_pg_say "reusing server at $_BB_PG_URL"
        return 0
    fi
    _bb_pg_stop || true   # a stale one (server died): clean up its directory

    bindir=$(_bb_pg_find_bindir)
    if [[ -z "$bindir" ]]; then
        if [[ $EUID -ne 0 ]]; then
            if sudo -n true 2>/dev/null; then
                sudo="sudo -n"
            else
                _bb_pg_say "no PostgreSQL under /usr/lib/postgresql/*/bin, and not root (nor passwordless sudo) to install it; install Debian's 'postgresql' package"
                return 1
            fi
        fi
        _bb_pg_say "no PostgreSQL found; installing Debian's 'postgresql' package..."
        local aptlog
        aptlog=$(mktemp) || return 1
        if ! { $sudo apt-get update \
            && $sudo env DEBIAN_FRONTEND=noninteractive \
                apt-get install -y --no-install-recommends postgresql; } >"$aptlog" 2>&1 </dev/null; then
            tail -n 30 "$aptlog" >&2
            rm -f "$aptlog"
            _bb_pg_say "apt-get install postgresql failed"
            return 1
        fi
        rm -f "$aptlog"
        bindir=$(_bb_pg_find_bindir)
        if [[ -z "$bindir" ]]; then
            _bb_pg_say "installed 'postgresql' but still no server binaries under /usr/lib/postgresql/*/bin"
            return 1
        fi
    fi

    # The directory holding data dir, socket and log; owned by the server's user.
    if [[ $EUID -eq 0 ]]; then
        if ! id -u postgres >/dev/null 2>&1; then
            useradd --system --user-group --no-create-home --home-dir /nonexistent \
                --shell /usr/sbin/nologin postgres || return 1
        fi
        command -v runuser >/dev/null || { _bb_pg_say "runuser not found (util-linux)"; return 1; }
        base=$(mktemp -d /tmp/billbridge-pg.XXXXXX) || return 1
        chown postgres: "$base" || { rm -rf -- "$base"; return 1; }
    else
        base=$(mktemp -d "${TMPDIR:-/tmp}/billbridge-pg.XXXXXX") || return 1
    fi
    _BB_PG_BASE=$base
    _BB_PG_BINDIR=$bindir

    # Register cleanup before anything can be left running; chain any existing trap.
    if [[ -z "${_BB_PG_TRAPPED:-}" ]]; then
        prev=$(trap -p EXIT)
        if [[ -n "$prev" ]]; then
            eval "set -- $prev"   # -> trap -- 'COMMAND' EXIT
            prev=$3
        fi
        # `&& :` keeps a non-zero $? from tripping a caller's `set -e` inside the
        # trap (which would skip the chained command) while still passing $? on.
        trap "_bb_pg_stop && :${prev:+
$prev}" EXIT
        _BB_PG_TRAPPED=1
    fi

    if ! _bb_pg_run "$bindir/initdb" -D "$base/data" -A trust -U postgres --no-sync \
        -E UTF8 --locale=C >"$base/initdb.log" 2>&1; then
        tail -n 30 "$base/initdb.log" >&2
        _bb_pg_say "initdb failed"
        _bb_pg_stop
        return 1
    fi

    # A free port can be taken between picking and binding it: retry a few times.
    for attempt in 1 2 3; do
        port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])') \
            || { _bb_pg_say "python3 is needed to pick a free port"; _bb_pg_stop; return 1; }
        if _bb_pg_run "$bindir/pg_ctl" -D "$base/data" -w -t 60 -l "$base/server.log" \
            -o "-c listen_addresses=127.0.0.1 -p $port -k '$base' -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
            start >/dev/null 2>&1; then
            break
        fi
        if [[ $attempt -eq 3 ]] || ! grep -q "could not bind" "$base/server.log" 2>/dev/null; then
            _bb_pg_say "server failed to start; last lines of $base/server.log:"
            tail -n 30 "$base/server.log" >&2 2>/dev/null
            _bb_pg_stop
            return 1
        fi
    done

    _BB_PG_URL="postgresql://postgres@127.0.0.1:$port/postgres"
    export BILLBRIDGE_TEST_POSTGRES_URL="$_BB_PG_URL"
    version=$("$bindir/postgres" --version 2>/dev/null) || version="?"
    version=${version#*) }   # "postgres (PostgreSQL) 15.18 (Debian ...)" -> "15.18 ..."
    _bb_pg_say "started PostgreSQL ${version%% *} on 127.0.0.1:$port (data in $base)"
}

_bb_pg_start || return 1
