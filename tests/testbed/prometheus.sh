#!/usr/bin/env bash
# shellcheck shell=bash
# Prometheus and promtool (built from the Prometheus Go module, cached) for the chart's alert-rule
# unit tests (`promtool test rules`) and the dashboard test, whose Prometheus scrapes an operator
# running on the host. Nothing runs in the background here: each test starts its own Prometheus.
#
# Sourced by tests/testbed/up. Run by hand (`tests/testbed/prometheus.sh`) it only builds the binaries
# into the cache and prints their paths, so a test can use them before the bed is restarted.

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  # Run by hand: the bed's settings (CACHE, LOGS, the version pins) before anything uses them.
  set -euo pipefail
  TESTBED_SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
  # shellcheck source=lib.sh
  . "$TESTBED_SRC/lib.sh"
  require_go() { command -v go >/dev/null || die "Go is needed to build $1 (not found in PATH)"; }
fi

PROMETHEUS_DIR="$CACHE/prometheus-$PROMETHEUS_VERSION"
PROMETHEUS_BIN="$PROMETHEUS_DIR/prometheus"
PROMTOOL_BIN="$PROMETHEUS_DIR/promtool"

ensure_prometheus_binaries() {
  [[ -n "$CACHE" && -n "$PROMETHEUS_VERSION" ]] || die "CACHE and PROMETHEUS_VERSION must be set (lib.sh, versions)"
  [[ -x "$PROMETHEUS_BIN" && -x "$PROMTOOL_BIN" ]] && return 0
  require_go "prometheus $PROMETHEUS_VERSION"
  local tmp t0=$SECONDS
  tmp="$(mktemp -d "$CACHE/.prometheus-$PROMETHEUS_VERSION.XXXXXX")"
  log "building prometheus and promtool $PROMETHEUS_VERSION (log: $LOGS/build-prometheus.log)"
  # remove_all_sd drops the cloud service discoveries (AWS, Azure, GCE, Kubernetes, ...): the tests
  # scrape static targets, and the build is several times smaller without them. The web UI's assets
  # are not embedded (no builtinassets tag); the HTTP API, which the tests use, does not need them.
  if ! (cd "$tmp" && CGO_ENABLED=0 GOFLAGS='' GOBIN="$tmp" go install -trimpath -tags remove_all_sd \
    -ldflags "-s -w" \
    "$PROMETHEUS_MODULE/cmd/prometheus@$PROMETHEUS_VERSION" \
    "$PROMETHEUS_MODULE/cmd/promtool@$PROMETHEUS_VERSION") >"$LOGS/build-prometheus.log" 2>&1; then
    rm -rf "$tmp"
    die_with_log "building prometheus $PROMETHEUS_VERSION failed" "$LOGS/build-prometheus.log"
  fi
  chmod 755 "$tmp"
  rm -rf "$PROMETHEUS_DIR"
  mv "$tmp" "$PROMETHEUS_DIR"
  log "built prometheus and promtool in $((SECONDS - t0))s"
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  mkdir -p "$LOGS" "$CACHE"
  ensure_prometheus_binaries
  printf 'PROMETHEUS=%s\nPROMTOOL=%s\n' "$PROMETHEUS_BIN" "$PROMTOOL_BIN"
fi
