# shellcheck shell=bash
# Sourced by tests/testbed/up: a hot standby of the bed's PostgreSQL, made with pg_basebackup and
# streaming from the primary through a physical replication slot, so exports from a read replica are
# tested against the real thing. Expects up's PostgreSQL helpers (PG_BIN, PG_HOME, as_postgres, pg_psql).

STANDBY_SLOT=testbed_standby

standby_data() { printf '%s\n' "$(dirname "$PG_HOME")/postgres-standby/data"; }
standby_ready() { "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$STANDBY_PGPORT" -U "$PG_SUPERUSER" -d postgres; }
standby_in_recovery() {
  [[ "$(PGPASSWORD="$PG_PASSWORD" "$PG_BIN/psql" -X -q -tA -h 127.0.0.1 -p "$STANDBY_PGPORT" -U "$PG_SUPERUSER" \
    -d postgres -c 'select pg_is_in_recovery()' 2>/dev/null)" == t ]]
}
standby_tls_on() {
  [[ "$(PGPASSWORD="$PG_PASSWORD" "$PG_BIN/psql" -X -q -tA -h 127.0.0.1 -p "$STANDBY_PGPORT" -U "$PG_SUPERUSER" \
    -d postgres -c 'show ssl' 2>/dev/null)" == on ]]
}
standby_healthy() { pid_alive postgres-standby && standby_ready && standby_in_recovery && standby_tls_on; }
system_identifier() { "$PG_BIN/pg_controldata" -D "$1" 2>/dev/null | awk '/^Database system identifier:/ { print $NF }'; }

# A standby belongs to the primary it was copied from; after a fresh initdb of the primary it is made again.
standby_matches_primary() {
  local data="$1" id
  [[ -f "$data/standby.signal" ]] || return 1
  id="$(system_identifier "$data")"
  [[ -n "$id" && "$id" == "$(system_identifier "$PG_HOME/data")" ]]
}

make_standby() {
  local data="$1"
  log "making a hot standby of PostgreSQL with pg_basebackup (log: $LOGS/postgres-standby-basebackup.log)"
  rm -rf "$data"
  mkdir -p "$(dirname "$data")"
  chown postgres:postgres "$(dirname "$data")"
  chmod 700 "$(dirname "$data")"
  # The slot keeps the WAL the standby has not replayed yet, also while it is stopped; a slot left by
  # an earlier standby would pin WAL this copy never needs.
  pg_psql -d postgres -tAc "select pg_drop_replication_slot(slot_name) from pg_replication_slots where slot_name = '$STANDBY_SLOT'" >/dev/null
  # -R writes standby.signal and primary_conninfo (with the slot) into the copy.
  if ! as_postgres env PGPASSWORD="$PG_PASSWORD" "$PG_BIN/pg_basebackup" -h 127.0.0.1 -p "$PGPORT" \
    -U "$PG_SUPERUSER" -D "$data" -R -X stream -C -S "$STANDBY_SLOT" --checkpoint=fast \
    >"$LOGS/postgres-standby-basebackup.log" 2>&1; then
    rm -rf "$data"
    die_with_log "pg_basebackup failed" "$LOGS/postgres-standby-basebackup.log"
  fi
}

ensure_standby() {
  if [[ -n "$STANDBY_PGPORT" ]] && standby_healthy; then return 0; fi
  stop_pid postgres-standby INT
  local data attempt
  data="$(standby_data)"
  # A postmaster we lost track of still owns the data directory: stop it before anything else.
  if [[ -s "$data/postmaster.pid" ]]; then
    head -n1 "$data/postmaster.pid" >"$RUN/postgres-standby.pid"
    printf '%s\n' "$data" >"$RUN/postgres-standby.marker"
    stop_pid postgres-standby INT
  fi
  standby_matches_primary "$data" || make_standby "$data"
  touch "$LOGS/postgres-standby.log"
  chown postgres:postgres "$LOGS/postgres-standby.log"
  for attempt in 1 2 3; do
    pick_ports STANDBY_PGPORT
    # The copy carries the primary's testbed.conf; only the port differs.
    cat >"$data/testbed.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $STANDBY_PGPORT
unix_socket_directories = ''
fsync = off
synchronous_commit = off
full_page_writes = off
hot_standby = on
$(pg_tls_conf)
CONF
    chown postgres:postgres "$data/testbed.conf"
    log "starting the PostgreSQL hot standby on 127.0.0.1:$STANDBY_PGPORT"
    as_postgres "$PG_BIN/pg_ctl" -D "$data" -l "$LOGS/postgres-standby.log" -w -t 60 start >/dev/null && break
    ((attempt < 3)) || die_with_log "the PostgreSQL standby exited while starting, three times" "$LOGS/postgres-standby.log"
    log "the PostgreSQL standby exited while starting (attempt $attempt of 3); retrying on a fresh port"
    STANDBY_PGPORT=''
  done
  head -n1 "$data/postmaster.pid" >"$RUN/postgres-standby.pid"
  printf '%s\n' "$data" >"$RUN/postgres-standby.marker"
  wait_until 60 "the PostgreSQL standby to accept connections in recovery" postgres-standby standby_in_recovery
}
