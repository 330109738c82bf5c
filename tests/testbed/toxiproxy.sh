# shellcheck shell=bash
# Sourced by tests/testbed/up: a toxiproxy server (built from its Go module, cached) for the
# fault-injection tests. Its API listens on loopback; tests create proxies listening on the bridge
# address, which host processes and pods both reach.

TOXIPROXY_BIN="$CACHE/toxiproxy-$TOXIPROXY_VERSION/toxiproxy-server"

ensure_toxiproxy_binary() {
  [[ -x "$TOXIPROXY_BIN" ]] && return 0
  require_go "toxiproxy $TOXIPROXY_VERSION"
  local dir tmp t0=$SECONDS
  dir="$(dirname "$TOXIPROXY_BIN")"
  tmp="$(mktemp -d "$CACHE/.toxiproxy-$TOXIPROXY_VERSION.XXXXXX")"
  log "building toxiproxy $TOXIPROXY_VERSION (log: $LOGS/build-toxiproxy.log)"
  if ! (cd "$tmp" && CGO_ENABLED=0 GOFLAGS='' GOBIN="$tmp" go install -trimpath -ldflags "-s -w" \
    "$TOXIPROXY_MODULE/cmd/server@$TOXIPROXY_VERSION") >"$LOGS/build-toxiproxy.log" 2>&1; then
    rm -rf "$tmp"
    die_with_log "building toxiproxy $TOXIPROXY_VERSION failed" "$LOGS/build-toxiproxy.log"
  fi
  mv "$tmp/server" "$tmp/toxiproxy-server"
  chmod 755 "$tmp"
  rm -rf "$dir"
  mv "$tmp" "$dir"
  log "built toxiproxy in $((SECONDS - t0))s"
}

toxiproxy_live() { curl -fsS --max-time 3 "http://127.0.0.1:$TOXIPROXY_PORT/version" >/dev/null; }
toxiproxy_healthy() { pid_alive toxiproxy && toxiproxy_live; }

start_toxiproxy() {
  pick_ports TOXIPROXY_PORT
  log "starting toxiproxy (API on 127.0.0.1:$TOXIPROXY_PORT)"
  start_bg toxiproxy "$TOXIPROXY_BIN" "$TOXIPROXY_BIN" -host 127.0.0.1 -port "$TOXIPROXY_PORT"
}

ensure_toxiproxy() {
  toxiproxy_healthy && [[ -n "$TOXIPROXY_PORT" ]] && return 0
  stop_pid toxiproxy
  launch toxiproxy 30 toxiproxy_live start_toxiproxy TOXIPROXY_PORT
}
