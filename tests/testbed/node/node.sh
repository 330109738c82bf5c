# shellcheck shell=bash disable=SC2034  # sourced by up and down after lib.sh
# The test bed's real node: containerd + runc, pod networking on a Linux bridge with the CNI bridge
# plugin, kubelet, kube-proxy (iptables mode) and everything they change on the machine. Sourced by
# tests/testbed/up (ensure_node_* functions) and tests/testbed/down (node_teardown, node_restore).
#
# One real node per machine: kube-proxy's chains are global to the network namespace. The node's
# machine-wide state lives in NODE_SYS (the owner, the values to restore, containerd's state).

NODE_NAME=testbed-node
NODE_BRIDGE=sxtb0
POD_CIDR=10.244.0.0/24
# The bridge's address: the node's InternalIP, the API server's advertised address, and the one
# address at which host services (PostgreSQL, sshd, MinIO) answer pods and host processes alike.
NODE_IP=10.244.0.1
SERVICE_CIDR=10.0.0.0/24
KUBERNETES_SERVICE_IP=10.0.0.1 # the `kubernetes` Service: the first address of SERVICE_CIDR
# Fixed and locally administered, so the bridge's MAC never changes when the first veth joins.
NODE_BRIDGE_MAC=02:5e:78:00:00:01
CNI_NETWORK=scheduled-exports-testbed

NODE_DIR="$TB/node"
KUBELET_ROOT="$NODE_DIR/kubelet"
POD_LOGS="$NODE_DIR/pod-logs"
CONTAINERD_ROOT="$NODE_DIR/containerd"
CNI_CONF_DIR="$NODE_DIR/cni/net.d"
CNI_IPAM_DIR="$NODE_DIR/cni/ipam"
NODE_SYS=/run/scheduled-exports-testbed
NODE_OWNER="$NODE_SYS/owner"
NODE_RESTORE="$NODE_SYS/restore"
CONTAINERD_STATE="$NODE_SYS/containerd"
CONTAINERD_SOCK="$NODE_SYS/containerd.sock"
# cgroupRoot of the kubelet (pods go below it) and, in runtime/, containerd and its shims: every
# process the node starts is found, and killed, through this one subtree.
NODE_CGROUP=scheduled-exports-testbed
CHAIN_PREFIX=SXTB-

PAUSE_SRC="$TESTBED_SRC/node/pause.c"
PAUSE_HASH="$(sha256sum "$PAUSE_SRC" "$TESTBED_SRC/node/pause-image" | sha256sum | cut -c1-12)"
PAUSE_BIN="$CACHE/pause-$PAUSE_HASH/pause"
# Domain-qualified, so the CRI plugin's name normalisation leaves it as imported.
PAUSE_IMAGE="localhost/scheduled-exports-testbed/pause:$PAUSE_HASH"

# Values the kubelet, kube-proxy and the CNI bridge plugin may change; up records them once, down
# puts them back.
NODE_SYSCTLS=(
  net.ipv4.ip_forward
  net.ipv6.conf.all.forwarding
  net.ipv4.conf.all.route_localnet
  vm.overcommit_memory
  vm.panic_on_oom
  kernel.panic
  kernel.panic_on_oops
  kernel.keys.root_maxkeys
  kernel.keys.root_maxbytes
  net.netfilter.nf_conntrack_max
  net.netfilter.nf_conntrack_tcp_timeout_established
  net.netfilter.nf_conntrack_tcp_timeout_close_wait
)
# Paths with names hard-coded in the kubelet, containerd or libcni; down removes them when up created
# them, and otherwise only the node's entries inside them.
NODE_FIXED_PATHS=(/var/lib/kubelet /var/log/containers /var/log/pods /var/lib/cni /run/containerd)

ipt() { iptables -w 10 "$@"; }
ctr_node() { ctr --address "$CONTAINERD_SOCK" --namespace k8s.io "$@"; }

# ---------------------------------------------------------------------------------------------------
# Ownership and the record of what to restore.
# ---------------------------------------------------------------------------------------------------

# The owner's node is alive while its containerd answers or its processes hold the cgroup.
node_alive() {
  ctr --address "$CONTAINERD_SOCK" version >/dev/null 2>&1 || [[ -n "$(node_cgroup_pids)" ]]
}

# claim_node: refuse when another clone's node runs here; adopt a dead one's leftovers.
claim_node() {
  mkdir -p "$NODE_SYS"
  chmod 755 "$NODE_SYS"
  if [[ -s "$NODE_OWNER" ]]; then
    local owner
    owner="$(cat "$NODE_OWNER")"
    if [[ "$owner" != "$TB" ]]; then
      if node_alive; then
        die "the real node of $owner runs on this machine (one per machine); stop it first with that clone's tests/testbed/down"
      fi
      log "cleaning up the stopped node left by $owner"
      node_teardown "$owner/node"
    fi
  fi
  printf '%s\n' "$TB" >"$NODE_OWNER"
}

# Writes NODE_RESTORE once, before the first change; a second `up` keeps the original values.
record_node_restore() {
  [[ -s "$NODE_RESTORE" ]] && return 0
  local name value path
  {
    for name in "${NODE_SYSCTLS[@]}"; do
      value="$(sysctl -n "$name" 2>/dev/null)" || continue
      printf 'sysctl %s %s\n' "$name" "${value//$'\t'/ }"
    done
    for path in "${NODE_FIXED_PATHS[@]}"; do
      if [[ -e "$path" ]]; then printf 'existed %s\n' "$path"; else printf 'created %s\n' "$path"; fi
    done
  } >"$NODE_RESTORE.tmp"
  mv -f "$NODE_RESTORE.tmp" "$NODE_RESTORE"
}

# ---------------------------------------------------------------------------------------------------
# cgroups (v1 hierarchies, and the v2 one of a hybrid setup).
# ---------------------------------------------------------------------------------------------------

cgroup_mounts() { findmnt -rn -t cgroup,cgroup2 -o TARGET | grep '^/sys/fs/cgroup/' || true; }

ensure_node_cgroups() {
  local mount dir
  while read -r mount; do
    for dir in "$mount/$NODE_CGROUP" "$mount/$NODE_CGROUP/runtime"; do
      mkdir -p "$dir"
      # A new v1 cpuset starts empty and refuses tasks until it has CPUs and memory nodes.
      if [[ -f "$dir/cpuset.cpus" && -z "$(cat "$dir/cpuset.cpus")" ]]; then
        cat "$(dirname "$dir")/cpuset.cpus" >"$dir/cpuset.cpus"
        cat "$(dirname "$dir")/cpuset.mems" >"$dir/cpuset.mems"
      fi
    done
  done < <(cgroup_mounts)
}

node_cgroup_pids() {
  local mount
  while read -r mount; do
    [[ -d "$mount/$NODE_CGROUP" ]] || continue
    # Cgroups vanish while find walks them when their last process exits.
    find "$mount/$NODE_CGROUP" -name cgroup.procs -exec cat {} + 2>/dev/null || true
  done < <(cgroup_mounts) | sort -un
}

# Kills every process of the node (containerd's shims, the Pods' containers) and removes its cgroups.
kill_node_cgroups() {
  local pids deadline=$((SECONDS + 30)) mount
  while pids="$(node_cgroup_pids)" && [[ -n "$pids" ]]; do
    # shellcheck disable=SC2086  # one pid per word
    kill -KILL $pids 2>/dev/null || true
    if ((SECONDS >= deadline)); then
      log "WARNING: processes still in cgroup $NODE_CGROUP after 30s: ${pids//$'\n'/ }"
      break
    fi
    sleep 0.2
  done
  while read -r mount; do
    [[ -d "$mount/$NODE_CGROUP" ]] || continue
    find "$mount/$NODE_CGROUP" -depth -type d -exec rmdir {} + 2>/dev/null || true
    [[ -d "$mount/$NODE_CGROUP" ]] && log "WARNING: could not remove cgroup $mount/$NODE_CGROUP"
  done < <(cgroup_mounts)
  return 0
}

# ---------------------------------------------------------------------------------------------------
# Network: the bridge, the host-service DNAT, the fences that keep pod packets on the machine.
# ---------------------------------------------------------------------------------------------------

ensure_node_bridge() {
  if ! ip link show dev "$NODE_BRIDGE" >/dev/null 2>&1; then
    log "creating bridge $NODE_BRIDGE ($NODE_IP, pods $POD_CIDR, Services $SERVICE_CIDR)"
    ip link add "$NODE_BRIDGE" address "$NODE_BRIDGE_MAC" type bridge
  fi
  # Pods get IPv4 only; no IPv6 link-local traffic on the bridge.
  sysctl -qw "net.ipv6.conf.$NODE_BRIDGE.disable_ipv6=1" 2>/dev/null || true
  ip addr replace "$NODE_IP/${POD_CIDR#*/}" dev "$NODE_BRIDGE"
  ip link set "$NODE_BRIDGE" up
  # No dummy interfaces in this kernel: the Service range is routed onto the bridge, so a ClusterIP
  # that kube-proxy does not (yet) translate never leaves by the default route.
  ip route replace "$SERVICE_CIDR" dev "$NODE_BRIDGE" src "$NODE_IP"
  # Lets the DNAT to 127.0.0.1 below route packets that arrived on the bridge.
  sysctl -qw "net.ipv4.conf.$NODE_BRIDGE.route_localnet=1"
}

# ensure_first TABLE CHAIN RULE...: RULE is CHAIN's first rule, exactly once. kube-proxy prepends its
# own jumps when it starts, so this runs again after it.
ensure_first() {
  local table="$1" chain="$2"
  shift 2
  local first
  first="$(ipt -t "$table" -S "$chain" | sed -n 2p)"
  [[ "$first" == "-A $chain $*" ]] && [[ "$(ipt -t "$table" -S "$chain" | grep -cxF -- "-A $chain $*")" == 1 ]] && return 0
  while ipt -t "$table" -D "$chain" "$@" 2>/dev/null; do :; done
  ipt -t "$table" -I "$chain" 1 "$@"
}

# ensure_chain TABLE CHAIN: an empty chain of ours.
ensure_chain() {
  ipt -t "$1" -N "$2" 2>/dev/null || true
  ipt -t "$1" -F "$2"
}

# sync_node_iptables: (re)writes the node's own chains for the current ports. Rules are written in the
# order `iptables -S` prints them, so ensure_first can compare them.
sync_node_iptables() {
  local port
  # Host services listen on 127.0.0.1 only; pods (PREROUTING) and host processes (OUTPUT) reach them at
  # the bridge address.
  ensure_chain nat "${CHAIN_PREFIX}HOST-SERVICES"
  for port in "$PGPORT" "${STANDBY_PGPORT:-}" "$SFTP_PORT" "$S3_PORT"; do
    [[ -n "$port" ]] || continue
    ipt -t nat -A "${CHAIN_PREFIX}HOST-SERVICES" -p tcp -m tcp --dport "$port" -j DNAT --to-destination "127.0.0.1:$port"
  done
  ensure_first nat PREROUTING -d "$NODE_IP/32" -i "$NODE_BRIDGE" -j "${CHAIN_PREFIX}HOST-SERVICES"
  ensure_first nat OUTPUT -d "$NODE_IP/32" -j "${CHAIN_PREFIX}HOST-SERVICES"

  # The API server listens on every address (host clients keep using 127.0.0.1, pods use the bridge):
  # nothing but loopback and the bridge may reach it. Pods may reach loopback only through the DNAT
  # above, never with a crafted 127.x destination.
  ensure_chain filter "${CHAIN_PREFIX}INPUT"
  ipt -t filter -A "${CHAIN_PREFIX}INPUT" -i lo -j RETURN
  ipt -t filter -A "${CHAIN_PREFIX}INPUT" -d 127.0.0.0/8 -i "$NODE_BRIDGE" -m conntrack ! --ctstate DNAT -j DROP
  ipt -t filter -A "${CHAIN_PREFIX}INPUT" -i "$NODE_BRIDGE" -j RETURN
  if [[ -n "${APISERVER_PORT:-}" ]]; then
    ipt -t filter -A "${CHAIN_PREFIX}INPUT" -p tcp -m tcp --dport "$APISERVER_PORT" -j DROP
  fi
  ensure_first filter INPUT -j "${CHAIN_PREFIX}INPUT"

  # No pod packet leaves the machine, and nothing from outside reaches a pod.
  ensure_chain filter "${CHAIN_PREFIX}FORWARD"
  ipt -t filter -A "${CHAIN_PREFIX}FORWARD" -i "$NODE_BRIDGE" ! -o "$NODE_BRIDGE" -j DROP
  ipt -t filter -A "${CHAIN_PREFIX}FORWARD" ! -i "$NODE_BRIDGE" -o "$NODE_BRIDGE" -j DROP
  ensure_first filter FORWARD -j "${CHAIN_PREFIX}FORWARD"
}

# Removes our chains and kube-proxy's and the kubelet's KUBE-* chains, with the rules jumping to them,
# from every table of both families. `kube-proxy --cleanup` cannot be used: it exits 1 here (no ipset
# support for its IPVS part) and leaves the iptables chains behind.
remove_node_iptables() {
  local cmd table rules line chain chains
  for cmd in iptables ip6tables; do
    command -v "$cmd" >/dev/null || continue
    for table in filter nat mangle raw; do
      rules="$("$cmd" -w 10 -t "$table" -S 2>/dev/null)" || continue
      grep -qE -- "-j (KUBE-|$CHAIN_PREFIX)|^-N (KUBE-|$CHAIN_PREFIX)" <<<"$rules" || continue
      log "removing KUBE-* and $CHAIN_PREFIX* chains from $cmd table $table"
      # Jumps from the built-in chains; xargs splits the printed rule as the shell would.
      while read -r line; do
        xargs "$cmd" -w 10 -t "$table" <<<"-D ${line#-A }" || true
      done < <(grep -E -- "^-A [A-Z]+ .*-j (KUBE-|$CHAIN_PREFIX)" <<<"$rules" | grep -vE -- "^-A (KUBE-|$CHAIN_PREFIX)" || true)
      mapfile -t chains < <(awk -v p="$CHAIN_PREFIX" '$1 == "-N" && ($2 ~ /^KUBE-/ || index($2, p) == 1) { print $2 }' <<<"$rules")
      # All flushed before any is deleted: they jump to each other.
      for chain in "${chains[@]}"; do "$cmd" -w 10 -t "$table" -F "$chain" 2>/dev/null || true; done
      for chain in "${chains[@]}"; do
        "$cmd" -w 10 -t "$table" -X "$chain" 2>/dev/null || log "WARNING: could not delete $cmd -t $table chain $chain"
      done
    done
  done
}

# ---------------------------------------------------------------------------------------------------
# containerd with the CNI bridge plugin and the local pause image.
# ---------------------------------------------------------------------------------------------------

ensure_pause_binary() {
  [[ -x "$PAUSE_BIN" ]] && return 0
  local dir tmp
  dir="$(dirname "$PAUSE_BIN")"
  tmp="$(mktemp -d "$CACHE/.pause-$PAUSE_HASH.XXXXXX")"
  log "building the static pause binary ($PAUSE_SRC)"
  if ! gcc -static -O2 -s -Wall -Wextra -Werror -o "$tmp/pause" "$PAUSE_SRC" >"$LOGS/build-pause.log" 2>&1; then
    rm -rf "$tmp"
    die_with_log "building the pause binary failed" "$LOGS/build-pause.log"
  fi
  chmod 755 "$tmp"
  rm -rf "$dir"
  mv "$tmp" "$dir"
}

write_node_runtime_config() {
  mkdir -p "$NODE_DIR" "$CNI_CONF_DIR" "$CNI_IPAM_DIR" "$CONTAINERD_ROOT" "$CONTAINERD_STATE" "$NODE_DIR/registry-hosts/_default"
  # No default gateway route in ipam: with isDefaultGateway the plugin adds it itself, and a second one
  # fails with "file exists". ipMasq off: pod packets keep their addresses and never leave anyway.
  cat >"$CNI_CONF_DIR/10-$CNI_NETWORK.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "$CNI_NETWORK",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$NODE_BRIDGE",
      "isGateway": true,
      "isDefaultGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$CNI_IPAM_DIR",
        "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$NODE_IP"}]]
      }
    }
  ]
}
EOF
  # Every registry resolves to a closed local port: an image that was not imported fails at once
  # instead of being fetched from the Internet.
  cat >"$NODE_DIR/registry-hosts/_default/hosts.toml" <<'EOF'
server = "http://127.0.0.1:9"
[host."http://127.0.0.1:9"]
  capabilities = ["pull", "resolve"]
EOF
  # restrict_oom_score_adj: this VM's root lacks CAP_SYS_RESOURCE, so runc cannot lower
  # oom_score_adj (every sandbox failed with "can't get final child's PID from pipe: EOF").
  cat >"$NODE_DIR/containerd.toml" <<EOF
# Generated by tests/testbed/up.
version = 2
root = "$CONTAINERD_ROOT"
state = "$CONTAINERD_STATE"
oom_score = 0
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "$CONTAINERD_SOCK"

[ttrpc]
  address = "$CONTAINERD_SOCK.ttrpc"

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "$CONTAINERD_ROOT/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  enable_selinux = false
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"

  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"

    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "/usr/sbin/runc"
        SystemdCgroup = false

  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$CNI_CONF_DIR"
    max_conf_num = 1

  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "$NODE_DIR/registry-hosts"
EOF
}

containerd_healthy() { pid_alive containerd && ctr --address "$CONTAINERD_SOCK" version >/dev/null 2>&1; }

start_containerd() {
  log "starting containerd (socket $CONTAINERD_SOCK)"
  # The wrapper moves itself into the node's runtime cgroups before exec, so containerd and every shim
  # it starts can be found there by down.
  # shellcheck disable=SC2016  # expanded by the inner bash
  start_bg containerd "$NODE_DIR/containerd.toml" bash -c '
    for procs in /sys/fs/cgroup/*/"$1"/runtime/cgroup.procs; do
      [[ -f "$procs" ]] && echo $$ >"$procs"
    done
    exec containerd --config "$2"' _ "$NODE_CGROUP" "$NODE_DIR/containerd.toml"
}

import_pause_image() {
  # Here-strings, not pipes: grep -q exits at the first match and pipefail would report ctr's SIGPIPE.
  grep -qxF "$PAUSE_IMAGE" <<<"$(ctr_node images ls -q)" && return 0
  log "importing the pause image $PAUSE_IMAGE"
  "$TESTBED_SRC/node/pause-image" "$PAUSE_BIN" "$PAUSE_IMAGE" "$NODE_DIR/pause.tar"
  ctr_node images import "$NODE_DIR/pause.tar" >"$LOGS/pause-import.log" 2>&1 ||
    die_with_log "importing the pause image failed" "$LOGS/pause-import.log"
}

# ---------------------------------------------------------------------------------------------------
# Teardown (down, and up before it rebuilds a node whose containerd died).
# ---------------------------------------------------------------------------------------------------

# node_mount_prefixes [NODE_DIR...]: where the node's mounts live (pod volumes, the kubelet's shared
# root bind, containerd's rootfs overlays, shm and netns mounts).
node_mount_prefixes() {
  local dir
  for dir in "$@"; do printf '%s\n' "$dir/kubelet" "$dir/containerd"; done
  printf '%s\n' "$NODE_SYS" /run/containerd /var/lib/kubelet
}

# node_mounts PREFIX...: mount points at or below a prefix, deepest first.
node_mounts() {
  findmnt -rn -o TARGET | awk -v list="$(printf '%s\n' "$@")" '
    BEGIN { n = split(list, p, "\n") }
    { for (i = 1; i <= n; i++) if (p[i] != "" && ($0 == p[i] || index($0, p[i] "/") == 1)) { print length($0), $0; break } }' |
    sort -rn | cut -d' ' -f2-
}

unmount_node() {
  local prefixes target round
  mapfile -t prefixes < <(node_mount_prefixes "$@")
  for round in 1 2 3 4 5; do
    [[ -n "$(node_mounts "${prefixes[@]}")" ]] || return 0
    while read -r target; do
      [[ -n "$target" ]] || continue
      umount "$target" 2>/dev/null || umount -l "$target" 2>/dev/null || true
    done < <(node_mounts "${prefixes[@]}")
  done
  if [[ -n "$(node_mounts "${prefixes[@]}")" ]]; then
    log "WARNING: mounts left after unmounting: $(node_mounts "${prefixes[@]}" | tr '\n' ' ')"
    return 1
  fi
}

# node_teardown [NODE_DIR]: stops containerd and everything in the node's cgroups, then removes
# mounts, network, iptables chains and the node's files. NODE_DIR defaults to this clone's.
node_teardown() {
  local dir="${1:-$NODE_DIR}" link
  stop_pid containerd
  kill_node_cgroups
  if unmount_node "$dir"; then
    # Only with nothing mounted below: a pod's subPath bind mount would make rm reach the host's files.
    rm -rf "$dir/kubelet" "$dir/containerd" "$dir/cni/ipam" "$CONTAINERD_STATE" "$CONTAINERD_SOCK" "$CONTAINERD_SOCK.ttrpc"
  else
    log "WARNING: kept $dir/kubelet and $dir/containerd because mounts remain below them"
  fi
  remove_node_iptables
  if ip link show dev "$NODE_BRIDGE" >/dev/null 2>&1; then
    # veths whose netns is already gone disappear by themselves; any still attached go first.
    for link in $(ip -o link show master "$NODE_BRIDGE" 2>/dev/null | awk -F': ' '{ print $2 }' | cut -d@ -f1); do
      ip link del "$link" 2>/dev/null || true
    done
    log "removing bridge $NODE_BRIDGE"
    ip link del "$NODE_BRIDGE"
  fi
  remove_node_fixed_path_entries "$dir"
}

# The node's entries in paths it shares with any other user of the machine.
remove_node_fixed_path_entries() {
  local dir="$1" link
  for link in /var/log/containers/*.log; do
    [[ -L "$link" ]] || continue
    [[ "$(readlink "$link")" == "$dir/"* ]] && rm -f "$link"
  done
  rm -f /var/lib/cni/results/"$CNI_NETWORK"-* 2>/dev/null || true
  rm -f /var/lib/kubelet/device-plugins/kubelet.sock 2>/dev/null || true
  # Other containerds on the machine share /run/containerd/s (shim sockets) and fifo/: only sockets
  # nothing listens on any more, and then empty directories, go.
  local sock listening
  listening="$(awk 'NR > 1 && $8 != "" { print $8 }' /proc/net/unix)"
  for sock in /run/containerd/s/*; do
    [[ -S "$sock" ]] || continue
    grep -qxF "$sock" <<<"$listening" || rm -f "$sock"
  done
  find /run/containerd/s /run/containerd/fifo -depth -type d -empty -delete 2>/dev/null || true
}

# node_restore: puts recorded sysctls back and removes the fixed paths that up created.
node_restore() {
  [[ -s "$NODE_RESTORE" ]] || return 0
  local kind name value current
  while read -r kind name value; do
    case "$kind" in
      sysctl)
        current="$(sysctl -n "$name" 2>/dev/null)" || continue
        current="${current//$'\t'/ }"
        if [[ "$current" != "$value" ]]; then
          log "restoring sysctl $name = $value (was $current)"
          sysctl -qw "$name=$value" || log "WARNING: could not restore sysctl $name"
        fi
        ;;
      created)
        if [[ "$name" == /run/containerd ]]; then
          # Another containerd may have started using it since: removed only when empty.
          rmdir "$name" 2>/dev/null || true
        elif [[ -e "$name" ]]; then
          if [[ -n "$(node_mounts "$name")" ]]; then
            log "WARNING: kept $name: mounts remain below it"
          else
            rm -rf "$name"
          fi
        fi
        ;;
    esac
  done <"$NODE_RESTORE"
  rm -f "$NODE_RESTORE" "$NODE_OWNER"
  rmdir "$NODE_SYS" 2>/dev/null || true
}

# ---------------------------------------------------------------------------------------------------
# kubelet and kube-proxy (their kubeconfigs need the API server's port, so up starts them after it).
# ---------------------------------------------------------------------------------------------------

# write_component_kubeconfig FILE CERT KEY: a kubeconfig for the host-side API address.
write_component_kubeconfig() {
  local file="$1" cert="$2" key="$3"
  cat >"$file.tmp" <<EOF2
apiVersion: v1
kind: Config
clusters:
- name: testbed
  cluster:
    server: https://127.0.0.1:$APISERVER_PORT
    certificate-authority: $PKI/ca.crt
users:
- name: component
  user:
    client-certificate: $cert
    client-key: $key
contexts:
- name: testbed
  context: {cluster: testbed, user: component}
current-context: testbed
EOF2
  chmod 600 "$file.tmp"
  mv -f "$file.tmp" "$file"
}

# KUBELET_PORT and KUBELET_HEALTHZ_PORT come from start_kubelet's pick_ports.
# shellcheck disable=SC2153
write_kubelet_config() {
  mkdir -p "$NODE_DIR" "$KUBELET_ROOT" "$POD_LOGS"
  # Pods' resolver (clusterDNS for dnsPolicy ClusterFirst, resolvConf for Default) is 127.0.0.1
  # inside the pod's own network namespace, where nothing listens: a name lookup fails at once and
  # never leaves the machine. There is no cluster DNS; the bed's addresses are IPs.
  printf 'nameserver 127.0.0.1\noptions timeout:1 attempts:1\n' >"$NODE_DIR/resolv.conf"
  write_component_kubeconfig "$NODE_DIR/kubelet.kubeconfig" "$PKI/node.crt" "$PKI/node.key"
  # Image GC off (thresholds 100/99): imported images cannot be pulled back. Eviction thresholds near
  # zero: the machine is shared, and tests must not lose pods to someone else's disk or memory use.
  # oomScoreAdj 0: see restrict_oom_score_adj. cgroup v1 is deprecated in 1.33 but only warned about
  # with failCgroupV1 false.
  cat >"$NODE_DIR/kubelet.yaml" <<EOF2
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: $KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $KUBELET_HEALTHZ_PORT
tlsCertFile: $PKI/kubelet-serving.crt
tlsPrivateKeyFile: $PKI/kubelet-serving.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: Webhook}
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
cgroupDriver: cgroupfs
cgroupRoot: /$NODE_CGROUP
cgroupsPerQOS: true
failSwapOn: false
failCgroupV1: false
oomScoreAdj: 0
resolvConf: $NODE_DIR/resolv.conf
clusterDNS: [127.0.0.1]
clusterDomain: cluster.local
podLogsDir: $POD_LOGS
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: 50Mi
  nodefs.available: 1%
  nodefs.inodesFree: 1%
  imagefs.available: 1%
serializeImagePulls: false
shutdownGracePeriod: 0s
shutdownGracePeriodCriticalPods: 0s
EOF2
}

# The Node reads Ready and carries no taint that keeps pods off it.
node_ready() {
  kube_get "/api/v1/nodes/$NODE_NAME" | python3 -c '
import json, sys
node = json.load(sys.stdin)
ready = [c for c in node.get("status", {}).get("conditions", []) if c["type"] == "Ready"]
taints = [t for t in node.get("spec", {}).get("taints", []) if t.get("effect") in ("NoSchedule", "NoExecute")]
sys.exit(0 if ready and ready[0]["status"] == "True" and not taints else 1)'
}

kubelet_healthy() {
  pid_alive kubelet &&
    [[ "$(curl -fsS --max-time 3 "http://127.0.0.1:$KUBELET_HEALTHZ_PORT/healthz" 2>/dev/null)" == ok ]] &&
    node_ready
}

start_kubelet() {
  pick_ports KUBELET_PORT KUBELET_HEALTHZ_PORT
  write_kubelet_config
  log "starting kubelet (node $NODE_NAME at $NODE_IP:$KUBELET_PORT)"
  start_bg kubelet "$NODE_DIR/kubelet.yaml" "$KUBE_BIN/kubelet" \
    --config "$NODE_DIR/kubelet.yaml" \
    --kubeconfig "$NODE_DIR/kubelet.kubeconfig" \
    --root-dir "$KUBELET_ROOT" \
    --cert-dir "$KUBELET_ROOT/pki" \
    --hostname-override "$NODE_NAME" \
    --node-ip "$NODE_IP"
}

kube_proxy_healthy() {
  pid_alive kube-proxy &&
    curl -fsS --max-time 3 "http://127.0.0.1:$KUBE_PROXY_HEALTHZ_PORT/healthz" >/dev/null 2>&1 &&
    ipt -t nat -S KUBE-SERVICES >/dev/null 2>&1
}

start_kube_proxy() {
  pick_ports KUBE_PROXY_HEALTHZ_PORT KUBE_PROXY_METRICS_PORT
  write_component_kubeconfig "$NODE_DIR/kube-proxy.kubeconfig" "$PKI/admin.crt" "$PKI/admin.key"
  # Conntrack settings 0: leave the machine's values alone. NodePorts only on the bridge address and
  # never on 127.0.0.1 (that would need route_localnet on every interface).
  cat >"$NODE_DIR/kube-proxy.yaml" <<EOF2
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: $NODE_DIR/kube-proxy.kubeconfig
mode: iptables
hostnameOverride: $NODE_NAME
bindAddress: $NODE_IP
clusterCIDR: $POD_CIDR
detectLocalMode: ClusterCIDR
healthzBindAddress: 127.0.0.1:$KUBE_PROXY_HEALTHZ_PORT
metricsBindAddress: 127.0.0.1:$KUBE_PROXY_METRICS_PORT
nodePortAddresses: ["$NODE_IP/32"]
iptables:
  localhostNodePorts: false
  masqueradeAll: false
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
EOF2
  log "starting kube-proxy (iptables mode; healthz on 127.0.0.1:$KUBE_PROXY_HEALTHZ_PORT)"
  start_bg kube-proxy "$NODE_DIR/kube-proxy.yaml" "$KUBE_BIN/kube-proxy" --config "$NODE_DIR/kube-proxy.yaml"
}
