#!/usr/bin/env python3
"""Helpers of benches/scale/run: the object plan, a Job watcher, process sampling and the report.

  scale.py plan    --out DIR --count N --hot H --lead S --instants K --ours-ns NS --cron-ns NS --image IMG
  scale.py watch   --namespace NS --out FILE            (until SIGTERM; one JSON line per new Job)
  scale.py cpu     [--fine] --pid PID                   (prints utime+stime in seconds; --fine: ns run time)
  scale.py mem     --pid PID                            (prints VmRSS and VmHWM in KiB)
  scale.py create  [--threads N] FILE...                (POSTs the objects; prints seconds per side)
  scale.py count-status --namespace NS                  (ScheduledExports with a status.nextRunTime)
  scale.py report  --dir DIR [--out FILE]              (prints the results table, writes DIR/results.json)
  scale.py curve   --dir DIR... [--out FILE]            (the table over sizes and the linearity verdict)
  scale.py selftest                                     (checks the pure functions here)

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


def proc_run_seconds(pid):
    """Run time of the process's live threads from the scheduler, in ns (/proc/PID/task/*/schedstat,
    first field): tick-based utime+stime moves in 10 ms steps, too coarse for a quiet minute."""
    total = 0
    for task in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/schedstat" % (pid, task)) as f:
                total += int(f.read().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            pass  # the thread ended meanwhile
    return total / 1e9


def cmd_cpu(args):
    if args.fine:
        print("%.6f" % proc_run_seconds(args.pid))
    else:
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
    """The figures of one side, or None when the run had no such side (BENCH_CRONJOBS=0)."""
    proc_path = os.path.join(d, "proc-%s.json" % side)
    if not os.path.exists(proc_path):
        return None
    expected = plan["expected"]
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
    with open(proc_path) as f:
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


def load_figures(d, meta):
    """1-minute load average of the machine: over the whole run, and from 10 s before the burst to
    15 s after its last Job."""
    samples = []
    path = os.path.join(d, "loadavg.txt")
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) == 2:
                    samples.append((int(parts[0]), float(parts[1])))
    burst = (meta.get("phases") or {}).get("burst")
    in_burst = [v for t, v in samples if burst and burst[0] <= t <= burst[1]]
    every = [v for _, v in samples]

    def stats(values):
        if not values:
            return None
        return {"mean": sum(values) / len(values), "max": max(values)}

    return {"run": stats(every), "burst": stats(in_burst)}


def watch_expiries(d, meta):
    """Watch re-lists of our controller (the API server's 410 Expired, logged by the controller),
    counted from its log's timestamps: before the objects settled, in the idle window, in all."""
    path = os.path.join(d, "controller.log")
    phases = meta.get("phases") or {}
    if not os.path.exists(path) or "settled" not in phases:
        return {}
    settled, burst = phases["settled"], phases["burst"]
    start = settled if meta["idle_where"] == "before" else burst[1]
    window = (start, start + meta["idle_seconds"])
    times = []
    with open(path) as f:
        for line in f:
            if "too old resource version" in line:
                try:
                    times.append(parse_iso(line.split()[0]).timestamp())
                except ValueError:
                    pass
    return {
        "watch_expiries_sync": sum(1 for t in times if t < settled),
        "watch_expiries_idle": sum(1 for t in times if window[0] <= t <= window[1]),
        "watch_expiries_run": len(times),
    }


def fmt_load(stats):
    return "n/a" if not stats else "%.1f (max %.1f)" % (stats["mean"], stats["max"])


def cmd_report(args):
    with open(os.path.join(args.dir, "plan.json")) as f:
        plan = json.load(f)
    with open(os.path.join(args.dir, "meta.json")) as f:
        meta = json.load(f)
    ours = side_figures(args.dir, "ours", plan)
    cron = side_figures(args.dir, "cron", plan)
    load = load_figures(args.dir, meta)
    ours.update(watch_expiries(args.dir, meta))
    none = {k: None for k in ours}

    def sec(v):
        return "n/a" if v is None else "%.3f s" % v

    def mib(kib):
        return "n/a" if kib is None else "%.1f MiB" % (kib / 1024)

    def num(v, fmt="%.1f"):
        return "n/a" if v is None else fmt % v

    def row(label, fn):
        return (label, fn(ours), "-" if cron is None else fn(cron))

    rows = [
        row("delay to Job creationTimestamp p50 / p99 / max", lambda s: "%s / %s / %s" % (
            num(s["p50_ct"], "%.0f"), num(s["p99_ct"], "%.0f"), num(s["max_ct"], "%.0f s"))),
        row("delay to Job seen on a watch p50", lambda s: sec(s["p50"])),
        row("delay to Job seen on a watch p99", lambda s: sec(s["p99"])),
        row("delay to Job seen on a watch max", lambda s: sec(s["max"])),
        row("peak RSS (VmHWM)", lambda s: mib(s["hwm_kib"])),
        row("RSS with no objects (the base)", lambda s: mib(s.get("base_rss_kib"))),
        row("RSS once the objects are synced", lambda s: mib(s["rss_settled_kib"])),
        row("RSS at the end", lambda s: mib(s["rss_kib"])),
        row("idle CPU with no objects (s per hour)", lambda s: num(s.get("base_idle_cpu_per_hour"), "%.2f")),
        row("idle CPU (s per hour)", lambda s: num(s["idle_cpu_per_hour"], "%.2f")),
        row("CPU s: start + sync of %d objects" % plan["count"], lambda s: num(s["cpu_sync"], "%.2f")),
        row("CPU s: the due burst", lambda s: num(s["cpu_burst"], "%.2f")),
        row("Jobs created / expected", lambda s: "%d / %d" % (s["jobs"], s["expected"])),
        ("reconciles: sync / idle window / whole run", "%s / %s / %s" % (
            num(ours.get("reconciles_sync"), "%.0f"), num(ours.get("reconciles_idle"), "%.0f"),
            num(ours.get("reconciles_run"), "%.0f")), "-"),
        ("watch re-lists (410 Expired): sync / idle window / whole run", "%s / %s / %s" % (
            num(ours.get("watch_expiries_sync"), "%.0f"), num(ours.get("watch_expiries_idle"), "%.0f"),
            num(ours.get("watch_expiries_run"), "%.0f")), "-"),
        row("unexpected or duplicate Jobs", lambda s: str(s["unexpected"] + s["wrong_slot"])),
    ]
    restart = {}
    path = os.path.join(args.dir, "restart-ours.json")
    if os.path.exists(path):
        with open(path) as f:
            restart = json.load(f)
        rows.append(("CPU s: one pass over all objects (restart)",
                     "%.2f (%.0f s, %s reconciles)" % (restart["cpu_pass"], restart["pass_seconds"],
                                                      num(restart.get("reconciles_pass"), "%.0f")),
                     "- (no periodic pass)"))
        rows.append(("peak RSS of the restarted process", mib(restart["hwm_pass_kib"]), "-"))
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows + [("", "scheduled-exports", "")])
    versus = ("%d CronJobs (timeZone)" % plan["count"]) if cron is not None else "no CronJobs"
    lines = [
        "Scale benchmark (benches/scale/run), %s, commit %s" % (meta["finished"], meta.get("commit", "?")),
        "%d ScheduledExports vs %s, %d slots x %d zones; measured instants: %s"
        % (plan["count"], versus, plan["slots_used"], len(plan["zones_used"]),
           ", ".join("%s (%d due)" % kv for kv in plan["due_per_instant"].items())),
        "idle window: %.0f s %s the burst" % (meta["idle_seconds"], meta["idle_where"])
        + ("; CronJob controller: kube-controller-manager %s %s" % (meta["kube_version"], meta["kcm_flags"])
           if cron is not None else ""),
        "objects created in %.0f s (%d in all)" % (meta["create_seconds"], plan["count"] * (2 if cron else 1)),
        "machine: %s; load average (1 min) over the run %s, during the burst %s"
        % (meta.get("machine", "?"), fmt_load(load["run"]), fmt_load(load["burst"])),
        "",
        "%-*s  %-*s  %s" % (w0, "", w1, "scheduled-exports", "CronJob controller"),
    ]
    for r in rows:
        lines.append("%-*s  %-*s  %s" % (w0, r[0], w1, r[1], r[2]))
    verdict = []
    cron_or = cron or none
    if ours["p99_ct"] is not None and cron_or["p99_ct"] is not None:
        verdict.append("p99 delay (creationTimestamp) %s" % ("OK (<= CronJob)" if ours["p99_ct"] <= cron["p99_ct"] else "WORSE than CronJob"))
    if ours["p99"] is not None and cron_or["p99"] is not None:
        verdict.append("p99 delay (watch) %s" % ("OK (<= CronJob)" if ours["p99"] <= cron["p99"] else "WORSE than CronJob"))
    if ours["hwm_kib"] and cron_or["hwm_kib"]:
        verdict.append("peak RSS %s" % ("OK (<= CronJob)" if ours["hwm_kib"] <= cron["hwm_kib"] else "WORSE than CronJob"))
    if restart and cron_or["hwm_kib"]:
        verdict.append("peak RSS of a restart %s" % ("OK (<= CronJob)" if restart["hwm_pass_kib"] <= cron["hwm_kib"] else "WORSE than CronJob"))
    if ours["jobs"] != ours["expected"] or ours["unexpected"] + ours["wrong_slot"]:
        verdict.append("MISSING Jobs: %d of %d, %d unexpected" % (
            ours["expected"] - ours["jobs"], ours["expected"], ours["unexpected"] + ours["wrong_slot"]))
    if not verdict:
        verdict.append("no CronJob side to compare with; every due object got its one Job")
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
    with open(os.path.join(args.dir, "results.json"), "w") as f:
        json.dump({
            "count": plan["count"],
            "due": len(plan["expected"]),
            "instants": plan["instants"],
            "ours": ours,
            "cron": cron,
            "restart": restart or None,
            "load": load,
            "meta": meta,
        }, f, indent=1)


# ---------------------------------------------------------------------------------------------
# curve: one run per size, side by side, and whether cost grows no faster than linearly
# ---------------------------------------------------------------------------------------------

# Between two sizes, a cost is linear or better when the larger run's cost above the base is at
# most LINEAR_TOLERANCE times the smaller run's scaled by the ratio of sizes, plus the metric's
# noise floor (what a shared two-core machine moves a figure by between runs).
LINEAR_TOLERANCE = 1.25


def per_unit_metrics(r):
    """Each cost above the fixed base, with the quantity it should be proportional to:
    (name, unit, value, scale, noise floor). None values are skipped by the verdict."""
    o, n, due = r["ours"], r["count"], r["due"]
    base_rss = o.get("base_rss_kib") or 0
    base_idle = o.get("base_idle_cpu_per_hour") or 0
    restart = r.get("restart") or {}

    def minus(v, base):
        return None if v is None else v - base

    return [
        ("RSS once synced, above the base", "KiB", minus(o["rss_settled_kib"], base_rss), n, 8 * 1024),
        ("peak RSS, above the base", "KiB", minus(o["hwm_kib"], base_rss), n, 8 * 1024),
        ("idle CPU, above the base", "s/h", minus(o["idle_cpu_per_hour"], base_idle), n, 0.5),
        ("CPU for the sync", "s", o["cpu_sync"], n, 1.0),
        ("CPU for one pass over all objects (restart)", "s", restart.get("cpu_pass"), n, 1.0),
        ("API server + etcd CPU for that pass (shared bed)", "s", restart.get("control_plane_cpu_pass"), n, 2.0),
        ("CPU for the burst", "s", o["cpu_burst"], due, 0.5),
        ("p99 delay, slot to Job seen (watch)", "s", o["p99"], due, 1.0),
    ]


def linearity(runs):
    """Verdicts between consecutive sizes: a list of (metric, smaller, larger, growth, ok), where
    growth is the larger run's cost over the smaller's scaled linearly (1.0 = exactly linear)."""
    runs = sorted(runs, key=lambda r: r["count"])
    out = []
    for small, large in zip(runs, runs[1:]):
        for a, b in zip(per_unit_metrics(small), per_unit_metrics(large)):
            name, unit, va, sa, floor = a
            _, _, vb, sb, _ = b
            if va is None or vb is None or sa <= 0 or sb <= 0:
                continue
            linear = max(va, 0.0) * sb / sa
            growth = vb / linear if linear > 0 else None
            ok = vb <= LINEAR_TOLERANCE * linear + floor
            out.append((name, unit, small["count"], large["count"], va, vb, sa, sb, growth, ok))
    return out


def cmd_curve(args):
    runs = []
    missing = []
    for d in args.dir:
        path = os.path.join(d, "results.json")
        if os.path.exists(path):
            with open(path) as f:
                runs.append(json.load(f))
        else:
            missing.append(d)
    if not runs:
        sys.exit("no results.json in %s" % ", ".join(args.dir))
    runs.sort(key=lambda r: r["count"])
    # The comparison: its own run (ours beside the CronJobs) when there is one; results from
    # before the comparison had its own run have the CronJob side in a curve run.
    versus = None
    if args.versus and os.path.exists(os.path.join(args.versus, "results.json")):
        with open(os.path.join(args.versus, "results.json")) as f:
            versus = json.load(f)
        if not versus.get("cron"):
            versus = None
    elif args.versus:
        missing.append(args.versus)
    cron_run = versus or next((r for r in runs if r.get("cron")), None)

    def mib(kib):
        return "n/a" if kib is None else "%.1f MiB" % (kib / 1024)

    def num(v, fmt="%.2f"):
        return "n/a" if v is None else fmt % v

    def delays(s, suffix, fmt):
        return " / ".join(num(s[k + suffix], fmt) for k in ("p50", "p99", "max"))

    def col(r, s, restart):
        """One column: our side of run r (s = r["ours"]) or the CronJob side (restart None)."""
        load = r.get("load") or {}
        meta = r["meta"]
        return [
            "%d / %d" % (r["count"], r["due"]),
            delays(s, "_ct", "%.0f"),
            delays(s, "", "%.2f"),
            mib(s["hwm_kib"]),
            "%s / %s" % (mib(s.get("base_rss_kib")), mib(s["rss_settled_kib"])),
            "%s / %s" % (num(s.get("base_idle_cpu_per_hour")), num(s["idle_cpu_per_hour"])),
            num(s["cpu_sync"]),
            num(s["cpu_burst"]),
            ("%.2f (%.0f s)" % (restart["cpu_pass"], restart["pass_seconds"])) if restart else "-",
            mib(restart["hwm_pass_kib"]) if restart else "-",
            ("%s / %s" % (num(meta.get("control_plane_cpu_sync")), num(restart.get("control_plane_cpu_pass"))))
            if restart else "(same run)",
            "%d / %d, %d" % (s["jobs"], s["expected"], s["unexpected"] + s["wrong_slot"]),
            ("%s / %s / %s" % (num(s.get("reconciles_sync"), "%.0f"), num(s.get("reconciles_idle"), "%.0f"),
                               num(restart.get("reconciles_pass"), "%.0f"))) if restart else "-",
            ("%s / %s" % (num(s.get("watch_expiries_idle"), "%.0f"), num(s.get("watch_expiries_run"), "%.0f")))
            if restart else "-",
            "%.0f s" % meta["create_seconds"],
            "%s / %s" % (fmt_load(load.get("run")), fmt_load(load.get("burst"))),
            "%s, %s" % (meta["finished"], meta.get("commit", "?")),
        ]

    labels = [
        "objects / due at the measured instant",
        "delay, slot to Job `creationTimestamp`, p50 / p99 / max (s)",
        "delay, slot to Job seen on a watch, p50 / p99 / max (s)",
        "peak RSS (VmHWM)",
        "RSS: no objects (base) / once synced",
        "idle CPU, s per hour: no objects (base) / with the objects",
        "CPU s: start + sync of the objects",
        "CPU s: the due burst",
        "CPU s: one pass over all objects (restart), wall time",
        "peak RSS of the restarted process",
        "API server + etcd CPU s (shared bed): sync / restart pass",
        "Jobs created / expected, unexpected",
        "reconciles: sync / idle window / restart pass",
        "watch re-lists (410 Expired): idle window / whole run",
        "objects created in (both sides)",
        "load average (1 min), run / burst: mean (max)",
        "run finished, commit",
    ]
    heads = ["scheduled-exports, %s" % "{:,}".format(r["count"]) for r in runs]
    cols = [col(r, r["ours"], r.get("restart")) for r in runs]
    if versus:
        heads.append("scheduled-exports, %s beside the CronJobs" % "{:,}".format(versus["count"]))
        cols.append(col(versus, versus["ours"], versus.get("restart")))
    if cron_run:
        heads.append("CronJob controller, %s" % "{:,}".format(cron_run["count"]))
        cols.append(col(cron_run, cron_run["cron"], None))
    lines = ["| | " + " | ".join(heads) + " |", "| --- |" + " --- |" * len(heads)]
    for i, label in enumerate(labels):
        lines.append("| %s | %s |" % (label, " | ".join(c[i] for c in cols)))
    machines = sorted({r["meta"].get("machine", "?") for r in runs})
    lines += ["", "Machine: %s." % "; ".join(machines)]
    if missing:
        lines.append("Not run (no results): %s." % ", ".join(missing))

    verdicts = linearity(runs)
    lines += ["", "Cost above the fixed base (the same process with no objects), per unit, between consecutive "
              "sizes%s; growth 1.00 is exactly linear, below 1 better than linear. Linear or better when the "
              "larger run's cost is at most %.2fx the smaller's scaled by the size ratio, plus the metric's "
              "noise floor." % (" (the runs of ours alone)" if versus else "", LINEAR_TOLERANCE), "",
              "| cost (per what) | sizes | smaller run | larger run | growth vs linear | verdict |",
              "| --- | --- | --- | --- | --- | --- |"]
    for name, unit, na, nb, va, vb, sa, sb, growth, ok in verdicts:
        per = "per due object" if name.startswith(("CPU for the burst", "p99")) else "per object"
        scale = 1000.0 if unit in ("s/h", "s") and per == "per object" else 1.0
        per_label = ("per 1,000 objects" if scale == 1000 else per)
        unit_label = {"KiB": "KiB", "s/h": "s/h", "s": "s" if per == "per object" else "ms"}[unit]
        factor = 1000.0 if unit_label == "ms" else scale

        def show(v, s):
            return "%.3g %s" % (v / s * factor, unit_label)
        lines.append("| %s (%s %s) | %s -> %s | %s | %s | %s | %s |" % (
            name, unit_label, per_label, "{:,}".format(na), "{:,}".format(nb), show(va, sa), show(vb, sb),
            "n/a (base-level)" if growth is None else "%.2f" % growth, "linear or better" if ok else "FASTER than linear"))
    bad = [v for v in verdicts if not v[-1]]
    if not verdicts:
        overall = "no verdict: fewer than two sizes have results"
    elif bad:
        overall = "cost grows FASTER than linearly: " + "; ".join(
            "%s from %s to %s (%.2fx linear)" % (v[0], "{:,}".format(v[2]), "{:,}".format(v[3]), v[8] or 0) for v in bad)
    else:
        overall = "cost grows no faster than linearly (%d comparisons over %s)" % (
            len(verdicts), ", ".join("{:,}".format(r["count"]) for r in runs))
    lines += ["", "**Verdict:** " + overall + "."]
    if cron_run:
        o, c = cron_run["ours"], cron_run["cron"]
        lines.append("**Against the CronJob controller at %s:** p99 delay (watch) %.2f s vs %.2f s, peak RSS %s vs %s, "
                     "idle CPU %.2f vs %.2f s per hour." % ("{:,}".format(cron_run["count"]), o["p99"] or 0, c["p99"] or 0,
                                                              mib(o["hwm_kib"]), mib(c["hwm_kib"]),
                                                              o["idle_cpu_per_hour"], c["idle_cpu_per_hour"]))
    text = "\n".join(lines) + "\n"
    sys.stdout.write(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)


def cmd_selftest(_args):
    """Checks the percentile and the linearity verdict on made-up runs."""
    assert percentile([3, 1, 2], 50) == 2
    assert percentile(list(range(1, 101)), 99) == 99
    assert percentile([], 99) is None

    def run(n, due, rss_mib, idle, sync, burst, p99):
        side = {"rss_settled_kib": rss_mib * 1024, "hwm_kib": rss_mib * 1024, "base_rss_kib": 20 * 1024,
                "idle_cpu_per_hour": idle, "base_idle_cpu_per_hour": 0.1, "cpu_sync": sync,
                "cpu_burst": burst, "p99": p99}
        return {"count": n, "due": due, "ours": side, "restart": {"cpu_pass": sync / 3}}

    linear = [run(1000, 50, 40, 0.3, 2.0, 0.2, 1.0), run(4000, 200, 100, 1.0, 8.0, 0.8, 4.0)]
    assert all(v[-1] for v in linearity(linear)), linearity(linear)
    # RSS above the base 20 MiB -> 300 MiB for 4x the objects: 14x, not linear.
    quadratic = [run(1000, 50, 40, 0.3, 2.0, 0.2, 1.0), run(4000, 200, 320, 1.0, 8.0, 0.8, 4.0)]
    bad = [v[0] for v in linearity(quadratic) if not v[-1]]
    assert bad == ["RSS once synced, above the base", "peak RSS, above the base"], bad
    # Better than linear (fixed costs dominate the small run) passes; so does noise below the floor.
    better = [run(1000, 50, 40, 0.3, 2.0, 0.2, 3.0), run(4000, 200, 60, 0.6, 5.0, 0.5, 3.5)]
    assert all(v[-1] for v in linearity(better))
    print("selftest OK")


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
    a.add_argument("--fine", action="store_true")
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
    a = sub.add_parser("curve")
    a.add_argument("--dir", required=True, action="append")
    a.add_argument("--versus", help="the run of ours beside the CronJobs, compared apart from the curve")
    a.add_argument("--out")
    sub.add_parser("selftest")
    args = p.parse_args()
    {"plan": cmd_plan, "watch": cmd_watch, "cpu": cmd_cpu, "mem": cmd_mem,
     "count-status": cmd_count_status, "create": cmd_create, "report": cmd_report,
     "curve": cmd_curve, "selftest": cmd_selftest}[args.cmd](args)


if __name__ == "__main__":
    main()
