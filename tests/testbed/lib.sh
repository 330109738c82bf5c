# shellcheck shell=bash disable=SC2034  # variables are used by up/down, which source this file
# Shared by tests/testbed/up and tests/testbed/down; sourced, not executed.
# Expects TESTBED_SRC (this directory) to be set by the caller.

REPO_ROOT="$(cd "$TESTBED_SRC/../.." && pwd)"
TB="$REPO_ROOT/target/testbed"
LOGS="$TB/logs"
RUN="$TB/run"            # pid files (+ a marker per pid to survive pid reuse)
STATE="$RUN/state"       # ports and paths of the running bed, reused by a second `up`
CACHE="${SCHEDULED_EXPORTS_CACHE:-$HOME/.cache/scheduled-exports}"

# shellcheck source=versions
. "$TESTBED_SRC/versions"

KUBE_BIN="$CACHE/kubernetes-$KUBERNETES_VERSION"
MINIO_BIN="$CACHE/minio-$MINIO_VERSION/minio"
HELM_BIN="$CACHE/helm-$HELM_VERSION/helm"

SFTP_USER=sxsftp
SFTP_PASSWORD=sxsftp-testbed-password
PG_SUPERUSER=postgres
PG_PASSWORD=testbed-postgres-password
PG_DATABASE=scheduled_exports
S3_BUCKET=scheduled-exports
S3_ACCESS_KEY=testbed-access-key
S3_SECRET_KEY=testbed-secret-key-0123456789
S3_REGION=us-east-1

log() { printf '[testbed] %s\n' "$*" >&2; }

# A command that fails under set -e names itself instead of ending the script silently (errtrace:
# also inside functions).
set -E
trap 'log "ERROR: command failed (exit $?) in ${FUNCNAME[0]:-the main script}, line $LINENO: $BASH_COMMAND"' ERR

die() { printf '[testbed] ERROR: %s\n' "$*" >&2; exit 1; }

# die_with_log REASON LOGFILE: the tail explains most start-up failures without opening the file.
die_with_log() {
  local reason="$1" file="$2"
  if [[ -f "$file" ]]; then
    printf -- '----- last lines of %s -----\n' "$file" >&2
    tail -n 40 "$file" >&2 || true
    printf -- '-----\n' >&2
  fi
  die "$reason (log: $file)"
}

# wait_until SECONDS DESCRIPTION COMPONENT CMD...: poll CMD until it succeeds or the deadline passes;
# fails at once if COMPONENT's process has exited, since waiting longer cannot help then.
wait_until() {
  local timeout="$1" what="$2" name="$3"
  shift 3
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    if [[ -f "$RUN/$name.pid" ]] && ! pid_alive "$name"; then
      die_with_log "$name exited while waiting for $what" "$LOGS/$name.log"
    fi
    if ((SECONDS >= deadline)); then
      die_with_log "timed out after ${timeout}s waiting for $what" "$LOGS/$name.log"
    fi
    sleep 0.3
  done
}

# wait_ready SECONDS NAME CMD...: poll CMD until it succeeds. Returns 1 at once when NAME's process has
# exited (the caller may start it again); dies when the deadline passes.
wait_ready() {
  local timeout="$1" name="$2"
  shift 2
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    pid_alive "$name" || return 1
    ((SECONDS < deadline)) || die_with_log "timed out after ${timeout}s waiting for $name to be ready" "$LOGS/$name.log"
    sleep 0.3
  done
}

# launch NAME SECONDS READY START [PORT_VAR...]: runs START (which picks the PORT_VARs and starts NAME
# with start_bg), then waits for READY. A component that exits before it is ready, most often because
# something else bound its port between the pick and its own bind, is started again on freshly picked
# ports, three times at most.
launch() {
  local name="$1" timeout="$2" ready="$3" start="$4" attempt v
  shift 4
  for attempt in 1 2 3; do
    "$start"
    wait_ready "$timeout" "$name" "$ready" && return 0
    log "$name exited while starting (attempt $attempt of 3); last lines of $LOGS/$name.log:"
    tail -n 5 "$LOGS/$name.log" >&2 || true
    stop_pid "$name"
    for v in "$@"; do printf -v "$v" '%s' ''; done
  done
  die_with_log "$name exited while starting, three times" "$LOGS/$name.log"
}

# free_ports N: N distinct free loopback ports; sockets stay bound until all are chosen so none repeats.
free_ports() {
  python3 - "$1" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}

port_is_free() {
  python3 - "$1" <<'PY'
import socket, sys
s = socket.socket()
# Like the servers themselves (Go, postgres, sshd), ignore TIME_WAIT leftovers of the previous run.
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
PY
}

# A pid file is trusted only while /proc/PID/cmdline still contains its marker, so a recycled pid
# belonging to something else is never signalled.
pid_alive() {
  local name="$1" pid marker
  [[ -f "$RUN/$name.pid" ]] || return 1
  pid="$(head -n1 "$RUN/$name.pid" 2>/dev/null)"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  [[ -r "/proc/$pid/cmdline" ]] || return 1
  marker="$(cat "$RUN/$name.marker" 2>/dev/null || true)"
  [[ -z "$marker" ]] && return 0
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$marker"
}

# start_bg NAME MARKER CMD...: run CMD detached in its own session (so it outlives the caller's
# process group) with output in logs/NAME.log.
start_bg() {
  local name="$1" marker="$2"
  shift 2
  mkdir -p "$RUN" "$LOGS"
  printf '%s\n' "$marker" >"$RUN/$name.marker"
  setsid "$@" >>"$LOGS/$name.log" 2>&1 </dev/null &
  echo $! >"$RUN/$name.pid"
}

# Exited processes linger as zombies until whoever inherited them reaps them; they count as stopped.
proc_running() {
  local state
  state="$(awk '/^State:/ { print $2 }' "/proc/$1/status" 2>/dev/null)" || return 1
  [[ -n "$state" && "$state" != Z ]]
}

# stop_pid NAME [SIGNAL]: SIGNAL (TERM), wait up to 20s, then KILL; removes the pid file.
stop_pid() {
  local name="$1" sig="${2:-TERM}" pid deadline
  if pid_alive "$name"; then
    pid="$(head -n1 "$RUN/$name.pid")"
    log "stopping $name (pid $pid)"
    kill -"$sig" "$pid" 2>/dev/null || true
    deadline=$((SECONDS + 20))
    while proc_running "$pid" && ((SECONDS < deadline)); do sleep 0.1; done
    if proc_running "$pid"; then
      log "$name did not exit on TERM, killing"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$RUN/$name.pid" "$RUN/$name.marker"
}

# Postgres and sshd refuse to run as root or need root-owned paths; both rules are checked component
# by component from / so the bed can fall back outside the repo when the clone lives somewhere odd.
path_root_owned_not_writable() {
  local p="$1"
  while :; do
    [[ -e "$p" ]] || return 1
    [[ "$(stat -c '%u' "$p")" == 0 ]] || return 1
    (( (8#$(stat -c '%a' "$p") & 8#022) == 0 )) || return 1
    [[ "$p" == / ]] && return 0
    p="$(dirname "$p")"
  done
}

# Outside-the-repo fallback directory, unique per clone.
fallback_dir() {
  printf '/var/lib/scheduled-exports-testbed/%s' "$(printf '%s' "$REPO_ROOT" | sha256sum | cut -c1-12)"
}
