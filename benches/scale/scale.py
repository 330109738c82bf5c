#!/usr/bin/env python3
"""Helpers of benches/scale/run: the object plan, a Job watcher, process sampling and the report.

  scale.py plan    --out DIR --count N --hot H --lead S --instants K --ours-ns NS --cron-ns NS --image IMG
  scale.py watch   --namespace NS --out FILE            (until SIGTERM; one JSON line per new Job)
  scale.py cpu     --pid PID                            (prints utime+stime in seconds)
  scale.py mem     --pid PID                            (prints VmRSS and VmHWM in KiB)
  scale.py create  [--threads N] FILE...                (POSTs the objects; prints seconds per side)
  scale.py count-status --namespace NS                  (ScheduledExports with a status.nextRunTime)
  scale.py report  --dir DIR                            (prints the results table)

Standard library only. Talks to the API server with the test bed's admin certificate
(KUBE_APISERVER_URL, KUBE_CA_FILE, KUBE_ADMIN_CERT_FILE, KUBE_ADMIN_KEY_FILE from target/testbed/env).
"""

import argparse
import datetime as dt
import http.client
import json
import os
import signal
import ssl
import sys
import time
import urllib.parse
from zoneinfo import ZoneInfo

UTC = dt.timezone.utc
CLK_TCK = os.sysconf("SC_CLK_TCK")

# Whole-hour, :30 and :45 offsets, both hemispheres, with and without DST. An instant on a quarter
# hour is a slot instant of a zone when the zone's local time there is on :00 or :30.
ZONES = [
    "UTC",
    "America/New_York",
    "America/Chicago",
    "America/Los_Angeles",
    "America/St_Johns",      # -03:30 / -02:30
    "America/Sao_Paulo",
    "Europe/London",
    "Europe/Berlin",
    "Asia/Kolkata",          # +05:30
    "Asia/Kathmandu",        # +05:45
    "Asia/Tokyo",
    "Australia/Adelaide",    # +09:30 / +10:30
    "Australia/Eucla",       # +08:45
    "Australia/Sydney",
    "Pacific/Chatham",       # +12:45 / +13:45
]

ANNOTATION_SLOT = "exports.crm.dev/slot"
ANNOTATION_CRON = "batch.kubernetes.io/cronjob-scheduled-timestamp"


# ---------------------------------------------------------------------------------------------
# Schedule semantics (docs/design.md, "When runs happen"): the first instant of each local day at which the wall
# time occurs; a time in a gap is read with the offset before the gap (zoneinfo, fold=0).
# ---------------------------------------------------------------------------------------------

def next_run(hhmm, zone, after):
    tz = ZoneInfo(zone)
    hour, minute = hhmm
    day = after.astimezone(tz).date() - dt.timedelta(days=1)
    best = None
    for i in range(4):
        d = day + dt.timedelta(days=i)
        candidate = dt.datetime(d.year, d.month, d.day, hour, minute, tzinfo=tz, fold=0).astimezone(UTC)
        if candidate > after and (best is None or candidate < best):
            best = candidate
    return best


def local_slot_at(instant, zone):
    """The (hour, minute) slot of `zone` whose run is at `instant`, or None."""
    local = instant.astimezone(ZoneInfo(zone))
    if local.minute not in (0, 30) or local.second != 0:
        return None
    hhmm = (local.hour, local.minute)
    return hhmm if next_run(hhmm, zone, instant - dt.timedelta(seconds=1)) == instant else None


def iso(instant):
    return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(text):
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


# ---------------------------------------------------------------------------------------------
# plan: the objects of both sides, and which of them are due at the measured instants
# ---------------------------------------------------------------------------------------------

def sx_object(name, ns, hhmm, zone, file_type):
    return {
        "apiVersion": "exports.crm.dev/v1alpha1",
        "kind": "ScheduledExport",
        "metadata": {"name": name, "namespace": ns, "labels": {"bench": "scale"}},
        "spec": {
            "fileType": file_type,
            "time": "%02d:%02d" % hhmm,
            "timeZone": zone,
            "source": {"secretRef": {"name": "crm-database"}},
            "destination": {"sftp": {
                "host": "sftp.example.edu",
                "port": 22,
                "username": name,
                "directory": "/exports",
                "secretRef": {"name": "sftp-credentials"},
            }},
        },
    }


def cron_object(name, ns, hhmm, zone, file_type, image):
    """A CronJob equivalent to the ScheduledExport: same wall time and zone, never two runs at
    once, same history limits, and a Job template of the same shape as the operator's."""
    env = [
        {"name": "ARTIFACT_STORE_URL", "value": "file:///tmp/sx-bench-artifacts"},
        {"name": "SPOOL_DIR", "value": "/spool"},
        {"name": "TMPDIR", "value": "/spool"},
        {"name": "EXPORT_TIMEOUT", "value": "30s"},
    ]
    container = {
        "name": "export",
        "image": image,
        "command": ["scheduled-exports", "export", "--namespace", ns, "--name", name],
        "env": env,
        "resources": {
            "requests": {"cpu": "100m", "memory": "64Mi", "ephemeral-storage": "1Gi"},
            "limits": {"memory": "256Mi", "ephemeral-storage": "11Gi"},
        },
        "volumeMounts": [{"name": "spool", "mountPath": "/spool"}],
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": name, "namespace": ns, "labels": {"bench": "scale", "file-type": file_type}},
        "spec": {
            "schedule": "%d %d * * *" % (hhmm[1], hhmm[0]),
            "timeZone": zone,
            "concurrencyPolicy": "Forbid",
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 1,
            "jobTemplate": {"spec": {
                "backoffLimit": 2,
                "activeDeadlineSeconds": 3600,
                "template": {
                    "metadata": {"labels": {"bench": "scale"}},
                    "spec": {
                        "containers": [container],
                        "restartPolicy": "Never",
                        "serviceAccountName": "scheduled-exports-export",
                        "enableServiceLinks": False,
                        "securityContext": {
                            "runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532, "fsGroup": 65532,
                            "seccompProfile": {"type": "RuntimeDefault"},
                        },
                        "volumes": [{"name": "spool", "emptyDir": {"sizeLimit": "10Gi"}}],
                    },
                },
            }},
        },
    }


def quarter_hours_from(instant):
    """Quarter-hour boundaries at or after `instant`."""
    t = instant.replace(second=0, microsecond=0)
    t += dt.timedelta(minutes=(-t.minute) % 15)
    if t < instant:
        t += dt.timedelta(minutes=15)
    while True:
        yield t
        t += dt.timedelta(minutes=15)


def cmd_plan(args):
    t0 = dt.datetime.now(UTC)
    gen = quarter_hours_from(t0 + dt.timedelta(seconds=args.lead))
    instants = [next(gen) for _ in range(args.instants)]
    first = instants[0]

    # Hot objects: `hot` per measured instant, in the zones whose slot falls on it.
    objects = []  # (hhmm, zone, due instant or None)
    for instant in instants:
        fits = [(z, local_slot_at(instant, z)) for z in ZONES]
        fits = [(z, s) for z, s in fits if s]
        if not fits:
            sys.exit("no zone has a slot at %s" % iso(instant))
        for i in range(args.hot):
            zone, hhmm = fits[i % len(fits)]
            objects.append((hhmm, zone))

    # The rest over all 48 slots x all zones, round robin. A slot whose next run would fall
    # between the plan and the first measured instant (while objects are being created) moves
    # to the next zone, so nothing is due before the measurement starts.
    i = 0
    while len(objects) < args.count:
        hhmm = divmod(30 * (i % 48), 60)
        k = (i // 48) % len(ZONES)
        for shift in range(len(ZONES)):
            zone = ZONES[(k + shift) % len(ZONES)]
            if not (t0 < next_run(hhmm, zone, t0) < first):
                break
        objects.append((hhmm, zone))
        i += 1

    sx_docs, cron_docs, expected = [], [], {}
    measured = set(instants)
    for n, (hhmm, zone) in enumerate(objects):
        name = "bench-%04d" % n
        file_type = "interactions" if n % 2 == 0 else "proposals"
        sx_docs.append(sx_object(name, args.ours_ns, hhmm, zone, file_type))
        cron_docs.append(cron_object(name, args.cron_ns, hhmm, zone, file_type, args.image))
        due = next_run(hhmm, zone, t0)
        if due in measured:
            expected[name] = iso(due)

    os.makedirs(args.out, exist_ok=True)
    # Chunks of one List each, created in parallel by the runner.
    for side, docs in (("ours", sx_docs), ("cron", cron_docs)):
        size = -(-len(docs) // args.chunks)
        for c in range(args.chunks):
            chunk = docs[c * size:(c + 1) * size]
            if chunk:
                with open(os.path.join(args.out, "%s-%02d.json" % (side, c)), "w") as f:
                    json.dump({"apiVersion": "v1", "kind": "List", "items": chunk}, f)

    per_instant = {iso(t): sum(1 for v in expected.values() if v == iso(t)) for t in instants}
    slots_used = len({hhmm for hhmm, _ in objects})
    zones_used = sorted({z for _, z in objects})
    plan = {
        "t0": iso(t0),
        "instants": [iso(t) for t in instants],
        "count": len(objects),
        "due_per_instant": per_instant,
        "slots_used": slots_used,
        "zones_used": zones_used,
        "expected": expected,
    }
    with open(os.path.join(args.out, "plan.json"), "w") as f:
        json.dump(plan, f, indent=1)
    # Shell-readable summary for the runner.
    print("PLAN_FIRST_INSTANT=%d" % int(first.timestamp()))
    print("PLAN_LAST_INSTANT=%d" % int(instants[-1].timestamp()))
    print("PLAN_INSTANTS='%s'" % " ".join(iso(t) for t in instants))
    print("PLAN_EXPECTED=%d" % len(expected))
    print("PLAN_SLOTS_USED=%d" % slots_used)
    print("PLAN_ZONES_USED=%d" % len(zones_used))
    print("PLAN_DUE_PER_INSTANT='%s'" % " ".join("%s:%d" % kv for kv in per_instant.items()))


# ---------------------------------------------------------------------------------------------
# API access with the test bed's admin certificate
# ---------------------------------------------------------------------------------------------

def api_connection(timeout=30):
    url = urllib.parse.urlparse(os.environ["KUBE_APISERVER_URL"])
    ctx = ssl.create_default_context(cafile=os.environ["KUBE_CA_FILE"])
    ctx.load_cert_chain(os.environ["KUBE_ADMIN_CERT_FILE"], os.environ["KUBE_ADMIN_KEY_FILE"])
    return http.client.HTTPSConnection(url.hostname, url.port, context=ctx, timeout=timeout)


def api_get(path):
    conn = api_connection()
    try:
        conn.request("GET", path, headers={"Accept": "application/json"})
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            raise RuntimeError("GET %s: HTTP %d %s" % (path, resp.status, body[:200]))
        return json.loads(body)
    finally:
        conn.close()


def cmd_create(args):
    """POSTs every object of the chunk files, both sides interleaved, from `threads` connections;
    prints the seconds each side took to be complete (`ours` and `cron`, by file name)."""
    import queue
    import threading

    items = {}
    for path in args.files:
        side = os.path.basename(path).split("-")[0]
        with open(path) as f:
            items.setdefault(side, []).extend(json.load(f)["items"])
    work = queue.Queue()
    sides = sorted(items)
    longest = max(len(v) for v in items.values())
    for i in range(longest):
        for side in sides:
            if i < len(items[side]):
                work.put((side, items[side][i]))
    left = {side: len(v) for side, v in items.items()}
    done_at = {}
    errors = []
    lock = threading.Lock()
    start = time.time()

    def collection(obj):
        group, version = (obj["apiVersion"].split("/") + [None])[:2]
        if version is None:
            prefix = "/api/" + group
        else:
            prefix = "/apis/%s/%s" % (group, version)
        plural = {"CronJob": "cronjobs", "ScheduledExport": "scheduledexports"}[obj["kind"]]
        return "%s/namespaces/%s/%s" % (prefix, obj["metadata"]["namespace"], plural)

    def worker():
        conn = api_connection()
        while True:
            try:
                side, obj = work.get_nowait()
            except queue.Empty:
                conn.close()
                return
            body = json.dumps(obj)
            for attempt in range(5):
                try:
                    conn.request("POST", collection(obj), body=body,
                                 headers={"Content-Type": "application/json", "Accept": "application/json"})
                    resp = conn.getresponse()
                    data = resp.read()
                    break
                except (OSError, http.client.HTTPException):
                    conn.close()
                    conn = api_connection()
                    time.sleep(0.2)
            else:
                with lock:
                    errors.append("%s: connection failed" % obj["metadata"]["name"])
                continue
            with lock:
                if resp.status not in (200, 201):
                    errors.append("%s: HTTP %d %s" % (obj["metadata"]["name"], resp.status, data[:300]))
                left[side] -= 1
                if left[side] == 0:
                    done_at[side] = time.time() - start

    threads = [threading.Thread(target=worker) for _ in range(args.threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        sys.exit("creating objects failed (%d errors), first: %s" % (len(errors), errors[0]))
    for side in sides:
        print("%s %.1f" % (side, done_at[side]))


def cmd_count_status(args):
    """How many ScheduledExports of the namespace carry status.nextRunTime (the controller saw them)."""
    done = cont = 0
    token = ""
    while True:
        q = "limit=1000" + ("&continue=" + urllib.parse.quote(token) if token else "")
        data = api_get("/apis/exports.crm.dev/v1alpha1/namespaces/%s/scheduledexports?%s" % (args.namespace, q))
        for item in data["items"]:
            cont += 1
            if (item.get("status") or {}).get("nextRunTime"):
                done += 1
        token = data["metadata"].get("continue") or ""
        if not token:
            break
    print("%d %d" % (done, cont))


# ---------------------------------------------------------------------------------------------
# watch: every Job of the namespace, with the local time its ADDED event arrived (ms resolution;
# creationTimestamp has whole seconds only)
# ---------------------------------------------------------------------------------------------

def cmd_watch(args):
    stop = {"now": False}

    def on_term(*_):
        stop["now"] = True
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, on_term)
    out = open(args.out, "a", buffering=1)
    seen = set()
    base = "/apis/batch/v1/namespaces/%s/jobs" % args.namespace

    def record(job, received, how):
        meta = job["metadata"]
        if meta["uid"] in seen:
            return
        seen.add(meta["uid"])
        ann = meta.get("annotations") or {}
        owners = meta.get("ownerReferences") or [{}]
        out.write(json.dumps({
            "name": meta["name"],
            "owner": owners[0].get("name"),
            "created": meta.get("creationTimestamp"),
            "slot": ann.get(ANNOTATION_SLOT) or ann.get(ANNOTATION_CRON),
            "received": received,
            "how": how,
        }) + "\n")

    rv = None
    while not stop["now"]:
        try:
            if rv is None:
                data = api_get(base)
                for job in data["items"]:
                    record(job, time.time(), "list")
                rv = data["metadata"]["resourceVersion"]
                if args.ready_file:
                    open(args.ready_file, "w").close()
            conn = api_connection(timeout=None)
            conn.request("GET", "%s?watch=1&allowWatchBookmarks=true&timeoutSeconds=1800&resourceVersion=%s"
                         % (base, rv), headers={"Accept": "application/json"})
            resp = conn.getresponse()
            if resp.status != 200:
                rv = None
                time.sleep(1)
                continue
            while True:
                line = resp.readline()
                if not line:
                    break
                received = time.time()
                event = json.loads(line)
                if event["type"] == "ERROR":  # e.g. 410 Gone: list again
                    rv = None
                    break
                rv = event["object"]["metadata"].get("resourceVersion", rv)
                if event["type"] == "ADDED":
                    record(event["object"], received, "watch")
            conn.close()
        except (OSError, http.client.HTTPException, ValueError) as err:
            print("watch %s: %s; reconnecting" % (args.namespace, err), file=sys.stderr)
            time.sleep(1)


# ---------------------------------------------------------------------------------------------
# Process figures from /proc
# ---------------------------------------------------------------------------------------------

def proc_cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # After the comm field: state is fields[0], utime is field 14 of the full line -> index 11.
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_mem_kib(pid):
    rss = hwm = 0
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
    return rss, hwm


def cmd_cpu(args):
    print("%.2f" % proc_cpu_seconds(args.pid))


def cmd_mem(args):
    rss, hwm = proc_mem_kib(args.pid)
    print("%d %d" % (rss, hwm))


# ---------------------------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------------------------

def percentile(values, p):
    """Nearest-rank percentile."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-p * len(ordered) // 100))
    return ordered[int(rank) - 1]


def side_figures(d, side, plan):
    expected = plan["expected"]
    measured = set(plan["instants"])
    jobs = []
    path = os.path.join(d, "jobs-%s.jsonl" % side)
    if os.path.exists(path):
        with open(path) as f:
            jobs = [json.loads(line) for line in f if line.strip()]
    delays, delays_ct, unexpected, wrong_slot, hit = [], [], 0, 0, set()
    for job in jobs:
        owner = job["owner"]
        slot = job["slot"]
        if owner not in expected:
            unexpected += 1
            continue
        # Ours writes the slot in UTC, the CronJob controller in the CronJob's zone.
        if slot is not None and parse_iso(slot) != parse_iso(expected[owner]):
            wrong_slot += 1
            continue
        if owner in hit:
            unexpected += 1  # a second Job for the same slot
            continue
        hit.add(owner)
        instant = parse_iso(expected[owner]).timestamp()
        delays.append(job["received"] - instant)
        if job.get("created"):
            delays_ct.append(parse_iso(job["created"]).timestamp() - instant)
    with open(os.path.join(d, "proc-%s.json" % side)) as f:
        proc = json.load(f)
    return {
        "jobs": len(hit),
        "expected": len(expected),
        "unexpected": unexpected,
        "wrong_slot": wrong_slot,
        "p50": percentile(delays, 50),
        "p99": percentile(delays, 99),
        "max": max(delays) if delays else None,
        "p50_ct": percentile(delays_ct, 50),
        "p99_ct": percentile(delays_ct, 99),
        "max_ct": max(delays_ct) if delays_ct else None,
        **proc,
    }


def cmd_report(args):
    with open(os.path.join(args.dir, "plan.json")) as f:
        plan = json.load(f)
    with open(os.path.join(args.dir, "meta.json")) as f:
        meta = json.load(f)
    ours = side_figures(args.dir, "ours", plan)
    cron = side_figures(args.dir, "cron", plan)

    def sec(v):
        return "n/a" if v is None else "%.3f s" % v

    def mib(kib):
        return "n/a" if kib is None else "%.1f MiB" % (kib / 1024)

    def num(v, fmt="%.1f"):
        return "n/a" if v is None else fmt % v

    rows = [
        ("delay to Job creationTimestamp p50 / p99 / max",
         "%s / %s / %s" % (num(ours["p50_ct"], "%.0f"), num(ours["p99_ct"], "%.0f"), num(ours["max_ct"], "%.0f s")),
         "%s / %s / %s" % (num(cron["p50_ct"], "%.0f"), num(cron["p99_ct"], "%.0f"), num(cron["max_ct"], "%.0f s"))),
        ("delay to Job seen on a watch p50", sec(ours["p50"]), sec(cron["p50"])),
        ("delay to Job seen on a watch p99", sec(ours["p99"]), sec(cron["p99"])),
        ("delay to Job seen on a watch max", sec(ours["max"]), sec(cron["max"])),
        ("peak RSS (VmHWM)", mib(ours["hwm_kib"]), mib(cron["hwm_kib"])),
        ("RSS once the objects are synced", mib(ours["rss_settled_kib"]), mib(cron["rss_settled_kib"])),
        ("RSS at the end", mib(ours["rss_kib"]), mib(cron["rss_kib"])),
        ("idle CPU (s per hour)", num(ours["idle_cpu_per_hour"], "%.2f"), num(cron["idle_cpu_per_hour"], "%.2f")),
        ("CPU s: start + sync of %d objects" % plan["count"], num(ours["cpu_sync"], "%.2f"), num(cron["cpu_sync"], "%.2f")),
        ("CPU s: the due burst", num(ours["cpu_burst"], "%.2f"), num(cron["cpu_burst"], "%.2f")),
        ("Jobs created / expected", "%d / %d" % (ours["jobs"], ours["expected"]),
         "%d / %d" % (cron["jobs"], cron["expected"])),
        ("unexpected or duplicate Jobs", str(ours["unexpected"] + ours["wrong_slot"]),
         str(cron["unexpected"] + cron["wrong_slot"])),
    ]
    restart = {}
    path = os.path.join(args.dir, "restart-ours.json")
    if os.path.exists(path):
        with open(path) as f:
            restart = json.load(f)
        rows.append(("CPU s: one pass over all objects (restart)",
                     "%.2f (%.0f s)" % (restart["cpu_pass"], restart["pass_seconds"]), "- (no periodic pass)"))
        rows.append(("peak RSS of the restarted process", mib(restart["hwm_pass_kib"]), "-"))
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows + [("", "scheduled-exports", "")])
    lines = [
        "Scale benchmark (benches/scale/run), %s" % meta["finished"],
        "%d ScheduledExports vs %d CronJobs (timeZone), %d slots x %d zones; measured instants: %s"
        % (plan["count"], plan["count"], plan["slots_used"], len(plan["zones_used"]),
           ", ".join("%s (%d due)" % kv for kv in plan["due_per_instant"].items())),
        "idle window: %.0f s %s the burst; CronJob controller: kube-controller-manager %s %s"
        % (meta["idle_seconds"], meta["idle_where"], meta["kube_version"], meta["kcm_flags"]),
        "objects created in %.0f s (both sides interleaved, %d in all)" % (meta["create_seconds"], 2 * plan["count"]),
        "",
        "%-*s  %-*s  %s" % (w0, "", w1, "scheduled-exports", "CronJob controller"),
    ]
    for r in rows:
        lines.append("%-*s  %-*s  %s" % (w0, r[0], w1, r[1], r[2]))
    verdict = []
    if ours["p99_ct"] is not None and cron["p99_ct"] is not None:
        verdict.append("p99 delay (creationTimestamp) %s" % ("OK (<= CronJob)" if ours["p99_ct"] <= cron["p99_ct"] else "WORSE than CronJob"))
    if ours["p99"] is not None and cron["p99"] is not None:
        verdict.append("p99 delay (watch) %s" % ("OK (<= CronJob)" if ours["p99"] <= cron["p99"] else "WORSE than CronJob"))
    if ours["hwm_kib"] and cron["hwm_kib"]:
        verdict.append("peak RSS %s" % ("OK (<= CronJob)" if ours["hwm_kib"] <= cron["hwm_kib"] else "WORSE than CronJob"))
    if restart and cron["hwm_kib"]:
        verdict.append("peak RSS of a restart %s" % ("OK (<= CronJob)" if restart["hwm_pass_kib"] <= cron["hwm_kib"] else "WORSE than CronJob"))
    if ours["jobs"] != ours["expected"]:
        verdict.append("MISSING Jobs: %d of %d" % (ours["expected"] - ours["jobs"], ours["expected"]))
    lines += [
        "",
        "creationTimestamp has whole seconds (the true delay is up to 1 s more); the watch figure adds",
        "the API server's write and watch delivery, which lag in a burst.",
        "target: " + "; ".join(verdict),
    ]
    text = "\n".join(lines) + "\n"
    sys.stdout.write(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("plan")
    a.add_argument("--out", required=True)
    a.add_argument("--count", type=int, default=5000)
    a.add_argument("--hot", type=int, default=200)
    a.add_argument("--lead", type=int, default=240)
    a.add_argument("--instants", type=int, default=1)
    a.add_argument("--chunks", type=int, default=4)
    a.add_argument("--ours-ns", required=True)
    a.add_argument("--cron-ns", required=True)
    a.add_argument("--image", default="scheduled-exports:bench")
    a = sub.add_parser("watch")
    a.add_argument("--namespace", required=True)
    a.add_argument("--out", required=True)
    a.add_argument("--ready-file")
    a = sub.add_parser("cpu")
    a.add_argument("--pid", type=int, required=True)
    a = sub.add_parser("mem")
    a.add_argument("--pid", type=int, required=True)
    a = sub.add_parser("create")
    a.add_argument("--threads", type=int, default=8)
    a.add_argument("files", nargs="+")
    a = sub.add_parser("count-status")
    a.add_argument("--namespace", required=True)
    a = sub.add_parser("report")
    a.add_argument("--dir", required=True)
    a.add_argument("--out")
    args = p.parse_args()
    {"plan": cmd_plan, "watch": cmd_watch, "cpu": cmd_cpu, "mem": cmd_mem,
     "count-status": cmd_count_status, "create": cmd_create, "report": cmd_report}[args.cmd](args)


if __name__ == "__main__":
    main()
