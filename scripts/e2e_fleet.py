#!/usr/bin/env python3
"""The fleet test of scripts/e2e-fleet.sh: replicas of examples/echo_server.rs behind a
simulated service discovery, a client fleet, a real Prometheus and Alertmanager.

    e2e_fleet.py clients TARGETS SUMMARY N [LIFETIME_MIN LIFETIME_MAX]
        the client fleet (needs the `websockets` package): N clients spread round-robin over
        the ready replicas of TARGETS (re-read on each connect); writes SUMMARY on SIGUSR1 and
        on exit (SIGTERM)
    e2e_fleet.py ports HOST PORT...
        fails if a port is taken (bound with SO_REUSEADDR, as the servers bind)
    e2e_fleet.py run [options]
        the whole test (see --help): starts the replicas, Prometheus and the client fleet,
        runs the phases and prints one `ok`/`FAIL` line per check, then the tables

TARGETS is a Prometheus file_sd JSON file, one target group per replica, as a Kubernetes
endpoints discovery would give it:

    [{"targets": ["127.0.0.1:19240"],        # the replica's /metrics (the `instance` label)
      "labels": {"__meta_fleet_ws": "127.0.0.1:19220",   # where clients connect
                 "__meta_fleet_ready": "true"}}]          # false while it drains

A draining replica stays in the file with ready "false": the clients stop choosing it, and
Prometheus keeps scraping it until it has exited, so its final values (the drain's closes) are
scraped. `__meta_*` labels are dropped after relabelling: flipping one does not restart the
scrape loop or change the series. The file is rewritten atomically (temporary file, rename).

Standard library only, apart from `websockets` in the client fleet. Checks print lines starting
with `ok    ` or `FAIL  `; `run` exits 1 when one failed.
"""
import argparse
import asyncio
import collections
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error

sys.dont_write_bytecode = True  # no __pycache__ in scripts/
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import e2e_alerts as ea  # noqa: E402  (query helpers, webhook posts, dashboard substitution)

# --- checks ---------------------------------------------------------------------------------

COUNTS = {"ok": 0, "fail": 0}


def ok(msg):
    COUNTS["ok"] += 1
    print(f"ok    {msg}", flush=True)


def fail(msg):
    COUNTS["fail"] += 1
    print(f"FAIL  {msg}", flush=True)


def check(cond, msg, detail=None):
    if cond:
        ok(msg)
    else:
        fail(msg if detail is None else f"{msg}: {detail}")
    return bool(cond)


note = ea.note


def phase(msg):
    print(f"--- {msg}", flush=True)


# --- the targets file (shared by the clients and Prometheus) ---------------------------------


def read_targets(path):
    """[(instance, ws_addr, ready)] from a file_sd file."""
    with open(path, encoding="utf-8") as f:
        groups = json.load(f)
    out = []
    for g in groups:
        labels = g.get("labels", {})
        for t in g["targets"]:
            out.append((t, labels["__meta_fleet_ws"], labels.get("__meta_fleet_ready") == "true"))
    return out


def write_targets(path, entries):
    """entries: [(instance, ws_addr, ready)]; written to a temporary file, then renamed."""
    groups = [{"targets": [inst],
               "labels": {"__meta_fleet_ws": ws, "__meta_fleet_ready": "true" if ready else "false"}}
              for inst, ws, ready in entries]
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(groups, f, indent=1)
    os.replace(tmp, path)


# --- the client fleet -----------------------------------------------------------------------


class Replica:
    """What the clients saw of one replica (keyed by its instance label)."""

    def __init__(self):
        self.ok = 0
        self.failed = collections.Counter()  # connects that failed, by reason
        self.ends = collections.Counter()  # connection ends, by kind
        self.open = 0
        self.connects = []  # Unix time of each successful connect
        self.end_times = collections.defaultdict(list)  # kind -> [Unix time]

    def doc(self):
        return {"ok": self.ok, "failed": dict(self.failed), "ends": dict(self.ends),
                "open": self.open, "connects": self.connects, "end_times": self.end_times}


class Fleet:
    INTERVAL = (0.5, 1.0)  # between two messages of a client
    BACKOFF = (0.05, 0.25)  # before reconnecting after a connection ended or a connect failed

    def __init__(self, targets, out, n, lifetime):
        self.targets_path = targets
        self.out = out
        self.n = n
        self.lifetime = lifetime
        self.replicas = collections.defaultdict(Replica)
        self.rr = 0
        self.cache_key = None
        self.cache = []
        self.seq = 0
        self.sent = self.echoed = self.mismatched = self.echo_timeouts = 0
        self.started = time.time()

    def ready(self):
        try:
            st = os.stat(self.targets_path)
            key = (st.st_ino, st.st_mtime_ns, st.st_size)
            if key != self.cache_key:
                self.cache = sorted((inst, ws) for inst, ws, ready in read_targets(self.targets_path)
                                    if ready)
                self.cache_key = key
        except (OSError, ValueError, KeyError):
            pass  # keep the last good list
        return self.cache

    def pick(self, last):
        """Round-robin over the ready replicas, another one than `last` when there are two."""
        ready = self.ready()
        if not ready:
            return None
        for _ in range(2):
            inst, ws = ready[self.rr % len(ready)]
            self.rr += 1
            if inst != last or len(ready) == 1:
                break
        return inst, ws

    def write(self):
        self.seq += 1
        doc = {"seq": self.seq, "time": time.time(), "started": self.started, "clients": self.n,
               "lifetime": self.lifetime,
               "open": sum(r.open for r in self.replicas.values()),
               "messages": {"sent": self.sent, "echoed": self.echoed,
                            "mismatched": self.mismatched, "echo_timeouts": self.echo_timeouts},
               "replicas": {k: r.doc() for k, r in self.replicas.items()}}
        tmp = f"{self.out}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(doc, f)
        os.replace(tmp, self.out)

    async def client(self, i, stopping):
        from websockets.asyncio.client import connect
        from websockets.exceptions import InvalidStatus

        await asyncio.sleep(i * 3.0 / self.n)  # ramp up over 3 s
        last, fails = None, 0
        while not stopping.is_set():
            picked = self.pick(last)
            if picked is None:
                await asyncio.sleep(0.2)
                continue
            inst, ws_addr = picked
            last = inst
            rec = self.replicas[inst]
            reason = None
            try:
                ws = await connect(f"ws://{ws_addr}/", open_timeout=5, close_timeout=5,
                                   ping_interval=None, compression=None, proxy=None)
            except InvalidStatus as e:
                reason = f"http_{e.response.status_code}"
            except ConnectionRefusedError:
                reason = "refused"
            except ConnectionResetError:
                reason = "reset"
            except TimeoutError:
                reason = "timeout"
            except Exception as e:  # InvalidMessage (closed during the handshake), other OSError
                reason = type(e).__name__
            if reason is not None:
                rec.failed[reason] += 1
                fails += 1
                # Small backoff, doubling while connects keep failing (capped at 1 s).
                await asyncio.sleep(min(1.0, random.uniform(*self.BACKOFF) * 2 ** min(fails - 1, 3)))
                continue
            fails = 0
            rec.ok += 1
            rec.connects.append(time.time())
            rec.open += 1
            try:
                kind = await self.converse(i, ws)
            finally:
                rec.open -= 1
            rec.ends[kind] += 1
            rec.end_times[kind].append(time.time())
            if kind != "client_close":
                await asyncio.sleep(random.uniform(*self.BACKOFF))

    async def converse(self, i, ws):
        """Messages and their echoes until the lifetime is over (the client closes with 1000)
        or the connection ends; returns how it ended: `client_close`, the code of the server's
        Close frame (`1001`, ...), `1006` (no Close frame) or `echo_timeout`."""
        from websockets.exceptions import ConnectionClosed

        loop = asyncio.get_running_loop()
        end_at = loop.time() + random.uniform(*self.lifetime)
        closed = asyncio.ensure_future(ws.wait_closed())
        seq = 0
        try:
            while True:
                if loop.time() >= end_at:
                    await ws.close(1000)
                    break
                msg = f"{i}:{seq}"
                seq += 1
                await ws.send(msg)
                self.sent += 1
                try:
                    echo = await asyncio.wait_for(ws.recv(), 5)
                except TimeoutError:
                    self.echo_timeouts += 1
                    ws.transport.abort()
                    await ws.wait_closed()
                    return "echo_timeout"
                if echo == msg:
                    self.echoed += 1
                else:
                    self.mismatched += 1
                pause = min(random.uniform(*self.INTERVAL), max(0.0, end_at - loop.time()))
                done, _ = await asyncio.wait({closed}, timeout=pause)
                if done:
                    break
        except ConnectionClosed:
            pass
        finally:
            closed.cancel()
        p = ws.protocol
        if p.close_rcvd is None:
            return "1006"
        if p.close_sent is not None and not p.close_rcvd_then_sent:
            return "client_close"
        return str(p.close_rcvd.code)

    async def main(self):
        loop = asyncio.get_running_loop()
        stopping = asyncio.Event()
        loop.add_signal_handler(signal.SIGUSR1, self.write)
        loop.add_signal_handler(signal.SIGTERM, stopping.set)
        loop.add_signal_handler(signal.SIGINT, stopping.set)
        tasks = [asyncio.ensure_future(self.client(i, stopping)) for i in range(self.n)]
        self.write()
        print(f"fleet: {self.n} clients, lifetime {self.lifetime[0]:g}-{self.lifetime[1]:g} s",
              file=sys.stderr, flush=True)
        await stopping.wait()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.write()


def cmd_clients(targets, out, n, lo="10", hi="30"):
    asyncio.run(Fleet(targets, out, int(n), (float(lo), float(hi))).main())
    return 0


# --- Prometheus queries beyond e2e_alerts' ---------------------------------------------------


def scalar(prom, expr, default=0.0):
    res = ea.query(prom, expr)
    return sum(float(r["value"][1]) for r in res) if res else default


def samples(prom, selector, window="10m"):
    """Raw samples of every series of `selector` over the last `window`: {labels: [(t, v)]}."""
    data = ea.api(prom, "/api/v1/query", query=f"{selector}[{window}]")
    out = {}
    for r in data["result"]:
        key = tuple(sorted(r["metric"].items()))
        out[key] = [(float(t), float(v)) for t, v in r["values"]]
    return out


def query_range(prom, expr, start, end, step=1):
    data = ea.api(prom, "/api/v1/query_range", query=expr, start=f"{start:.3f}",
                  end=f"{end:.3f}", step=str(step))
    return {tuple(sorted(r["metric"].items())): [(float(t), float(v)) for t, v in r["values"]]
            for r in data["result"]}


# --- the orchestration ----------------------------------------------------------------------


class Proc:
    """A replica of echo_server: one name, one pair of ports (kept across restarts)."""

    def __init__(self, name, ws, metrics, flags):
        self.name, self.ws, self.metrics, self.flags = name, ws, metrics, flags
        self.proc = None
        self.log = None
        self.lives = []  # [start Unix time, end Unix time or None]

    @property
    def instance(self):
        return self.metrics


class Test:
    def __init__(self, args):
        self.a = args
        self.prom = f"http://{args.host}:{args.base}"
        self.am = f"{args.host}:{args.base + 3}"
        self.targets = os.path.join(args.work, "sd", "targets.json")
        self.summary_path = os.path.join(args.work, "fleet-summary.json")
        self.pidfile = os.path.join(args.work, "pids")
        self.children = {}  # pid -> (name, Popen)
        self.replicas = []
        self.next_port = 0
        self.entries = []  # the targets file: [(instance, ws, ready)]
        self.alert_log = []  # [(t, [(alertname, state, labels)])]
        self.poller_stop = threading.Event()
        self.fleet = None
        self.prometheus = None
        self.events = {}  # name -> Unix time
        self.table = []  # (scenario, expected, seen)
        self.drains = []  # per drained replica: dict
        self.rules = {}

    # --- processes ---

    def record_pids(self):
        tmp = f"{self.pidfile}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            for pid, (name, _) in self.children.items():
                f.write(f"{pid} {name}\n")
        os.replace(tmp, self.pidfile)

    def spawn(self, name, argv, log_path, env=None):
        log = open(log_path, "ab")
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env)
        log.close()
        self.children[p.pid] = (name, p)
        self.record_pids()
        return p

    def reaped(self, p):
        self.children.pop(p.pid, None)
        self.record_pids()

    def wait_exit(self, p, timeout):
        try:
            rc = p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        self.reaped(p)
        return rc

    def stop_all(self):
        """SIGTERM every child (the fleet first, Prometheus last), SIGKILL after 8 s."""
        # The replicas' drains are quick with the fleet gone, and their last scrape needs
        # Prometheus still up.
        rank = {"fleet": 0, "prometheus": 2}
        for group in (0, 1, 2):
            ps = [p for name, p in list(self.children.values()) if rank.get(name, 1) == group]
            for p in ps:
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 8
            for p in ps:
                try:
                    p.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
                self.reaped(p)

    def new_replica(self, name, flags=()):
        i = self.next_port
        self.next_port += 1
        if i >= 10:
            raise RuntimeError("out of replica ports")
        h = self.a.host
        r = Proc(name, f"{h}:{self.a.base + 20 + i}", f"{h}:{self.a.base + 40 + i}", list(flags))
        r.log = os.path.join(self.a.work, f"{name}.log")
        self.replicas.append(r)
        return r

    def start(self, r):
        """Starts (or restarts) replica r; returns once its log says it is ready."""
        offset = os.path.getsize(r.log) if os.path.exists(r.log) else 0
        env = dict(os.environ)
        env.setdefault("RUST_LOG", "info")
        r.proc = self.spawn(r.name, [self.a.echo_server, "--listen", r.ws, "--metrics", r.metrics,
                                     *r.flags], r.log, env=env)
        r.lives.append([time.time(), None])

        def ready():
            if r.proc.poll() is not None:
                raise RuntimeError(f"{r.name} exited with {r.proc.returncode} at start")
            return "echo server ready" in log_text(r.log, offset)

        try:
            got = ea.wait_until(f"{r.name} ready", 15, ready, interval=0.05)
        except RuntimeError as e:
            got = None
            note(str(e))
        if not got:
            raise RuntimeError(f"{r.name} ({' '.join(r.flags) or 'no flags'}) did not log "
                               f"`echo server ready`; its log:\n{tail(r.log)}")
        return offset

    def kill(self, r):
        r.proc.kill()
        r.proc.wait()
        self.reaped(r.proc)
        r.lives[-1][1] = time.time()

    # --- the targets file ---

    def publish(self):
        write_targets(self.targets, self.entries)

    def join(self, r):
        self.entries.append((r.instance, r.ws, True))
        self.publish()

    def set_ready(self, r, ready):
        self.entries = [(i, w, ready if i == r.instance else rd) for i, w, rd in self.entries]
        self.publish()

    def leave(self, r):
        self.entries = [e for e in self.entries if e[0] != r.instance]
        self.publish()

    # --- the fleet ---

    def snapshot(self):
        """The fleet's counts now (SIGUSR1, then waits for the new summary)."""
        # The first summary is written once the SIGUSR1 handler is installed (before it, the
        # signal would end the process).
        if not ea.wait_until("the fleet's first summary", 15,
                             lambda: read_json(self.summary_path).get("seq"), interval=0.05):
            raise RuntimeError(f"the client fleet did not start:\n{tail(self.fleet_log)}")
        before = read_json(self.summary_path).get("seq", 0)
        if self.fleet.poll() is not None:
            raise RuntimeError(f"the client fleet exited with {self.fleet.returncode}:\n"
                               f"{tail(self.fleet_log)}")
        self.fleet.send_signal(signal.SIGUSR1)
        doc = ea.wait_until("fleet summary", 10,
                            lambda: (lambda d: d if d.get("seq", 0) > before else None)(
                                read_json(self.summary_path)), interval=0.02)
        if not doc:
            raise RuntimeError("the client fleet wrote no summary within 10 s")
        return doc

    # --- alerts ---

    def poll_alerts(self):
        while not self.poller_stop.is_set():
            try:
                now = time.time()
                got = [(a["labels"].get("alertname"), a["state"], a["labels"])
                       for a in ea.alerts(self.prom)]
                self.alert_log.append((now, got))
            except (OSError, urllib.error.URLError, RuntimeError, ValueError):
                pass
            self.poller_stop.wait(1.0)

    def seen_alerts(self, t0, t1, states=("firing",)):
        """{alertname: set of label strings} in state `states` polled within [t0, t1]."""
        out = collections.defaultdict(set)
        for t, got in list(self.alert_log):
            if t0 <= t <= t1:
                for name, state, labels in got:
                    if state in states:
                        out[name].add(",".join(f"{k}={v}" for k, v in sorted(labels.items())
                                               if k not in ("alertname", "severity")))
        return out

    def hook_alerts(self, t0, t1=None, name=None, status="firing"):
        """Alerts posted to the webhook between t0 and t1: [(received, alert)]."""
        hits = []
        for post in ea.webhook_posts(self.a.webhook_out):
            if post["received"] < t0 or (t1 is not None and post["received"] > t1):
                continue
            for a in post["body"].get("alerts", []):
                if (name is None or a["labels"].get("alertname") == name) and \
                        (status is None or a["status"] == status):
                    hits.append((post["received"], a))
        return hits

    def has_rule(self, name):
        return name in self.rules

    def wait_alert(self, name, since, timeout, instance=None):
        """Waits for `name` firing in Prometheus and at the webhook (startsAt >= since - 1 s);
        returns (seconds to firing, seconds to the webhook, the webhook alert) or Nones."""
        if not self.has_rule(name):
            fail(f"{name} is not among the loaded rules (dashboards/rules.yaml has no such alert)")
            return None, None, None

        def matches(labels):
            return labels.get("job") == self.a.job and \
                (instance is None or "instance" not in labels or labels["instance"] == instance)

        def firing():
            return [a for a in ea.alerts(self.prom) if a["labels"].get("alertname") == name
                    and a["state"] == "firing" and matches(a["labels"])
                    and ea.parse_ts(a["activeAt"]) >= since - 1]

        deadline = time.monotonic() + timeout
        fired = ea.wait_until(f"{name} firing", timeout, firing, interval=0.5)
        # Prometheus' ALERTS has no firing time: the first poll that saw it firing stands for it.
        t_fire = None
        if fired:
            seen = [t for t, got in self.alert_log if t >= since and any(
                n == name and st == "firing" and matches(lb) for n, st, lb in got)]
            t_fire = (min(seen) if seen else time.time()) - since
            note(f"{name} active (pending) since {ea.parse_ts(fired[0]['activeAt']) - since:.1f} s, "
                 f"firing by {t_fire:.1f} s, value {float(fired[0]['value']):.2f}")
            self.fired_value = float(fired[0]["value"])

        def arrived():
            return [(t, a) for t, a in self.hook_alerts(since - 1, name=name)
                    if matches(a["labels"]) and ea.parse_ts(a["startsAt"]) >= since - 1]

        hook = ea.wait_until(f"{name} at the webhook", max(3.0, deadline - time.monotonic()),
                             arrived, interval=0.5) if fired else None
        t_hook = hook[0][0] - since if hook else None
        return t_fire, t_hook, (hook[0][1] if hook else None)

    # --- Prometheus helpers bound to this job ---

    def sel(self, metric, instance=None, **labels):
        parts = [f'job="{self.a.job}"'] + ([f'instance="{instance}"'] if instance else [])
        parts += [f'{k}="{v}"' for k, v in labels.items()]
        return f"{metric}{{{', '.join(parts)}}}"

    def final(self, metric, instance, **labels):
        """The last value each series of one process lifetime reached, summed."""
        return scalar(self.prom, f"sum(max_over_time({self.sel(metric, instance, **labels)}[10m]))")

    def wait_up(self, r, timeout=15):
        return ea.wait_until(f"up of {r.name}", timeout,
                             lambda: scalar(self.prom, f'{self.sel("up", r.instance)} == 1') == 1,
                             interval=0.2)

    # --- the phases ---

    def run(self):
        a = self.a
        os.makedirs(os.path.dirname(self.targets), exist_ok=True)
        t0 = time.time()
        phase(f"{a.clients} clients, 3 replicas of echo_server (job {a.job}), Prometheus "
              f"scraping every 1 s through file_sd ({self.targets})")
        initial = [self.new_replica("r0"), self.new_replica("r1", ["--pace", str(a.pace)]),
                   self.new_replica("r2")]
        for r in initial:
            self.start(r)
            self.entries.append((r.instance, r.ws, True))
        self.publish()
        ok("3 replicas started, each logged `echo server ready`: " +
           ", ".join(f"{r.name} ws {r.ws} metrics {r.metrics}{' ' + ' '.join(r.flags) if r.flags else ''}"
                     for r in initial))

        # Prometheus starts with the three targets in its discovery file, so no rule sees the
        # job absent or its targets down.
        self.prometheus = self.spawn(
            "prometheus",
            [a.prometheus, f"--config.file={a.prometheus_yml}",
             f"--storage.tsdb.path={os.path.join(a.work, 'prom-data')}",
             f"--web.listen-address={a.host}:{a.base}"],
            os.path.join(a.work, "prometheus.log"))
        if ea.cmd_wait_http(f"{self.prom}/-/ready", 30) != 0:
            raise RuntimeError("Prometheus did not become ready within 30 s")
        ok(f"Prometheus ready on {a.host}:{a.base}")
        up = ea.wait_until("3 targets up", 30,
                           lambda: scalar(self.prom, f'count({self.sel("up")} == 1)') == 3)
        check(up, f"Prometheus discovered the 3 replicas through file_sd (up == 1 for each, "
                  f"{time.time() - t0:.1f} s after the first start)")
        ea.cmd_check_setup(self.prom, self.am)  # sets ea.FAILED on a failed check
        self.rules = {r["name"]: r for g in ea.api(self.prom, "/api/v1/rules")["groups"]
                      for r in g["rules"] if r["type"] == "alerting"}
        for name in ("WebSocketTargetsDown", "WebSocketJobAbsent", "WebSocketInstanceRestarting"):
            rule = self.rules.get(name)
            check(rule, f"fleet alert {name} is loaded from the CI copy of dashboards/rules.yaml",
                  "not in the rules (yet): the checks that need it fail below")
            if rule:
                note(f"{name}: {' '.join(rule['query'].split())} (for {rule.get('duration', 0)} s"
                     f"{', keep_firing_for ' + str(rule['keepFiringFor']) + ' s' if rule.get('keepFiringFor') else ''})")

        threading.Thread(target=self.poll_alerts, daemon=True).start()
        self.fleet_log = os.path.join(a.work, "fleet.log")
        self.fleet = self.spawn(
            "fleet",
            [sys.executable, os.path.abspath(__file__), "clients", self.targets, self.summary_path,
             str(a.clients), str(a.lifetime[0]), str(a.lifetime[1])], self.fleet_log)
        connected = ea.wait_until(f"{a.clients} clients connected", 20,
                                  lambda: self.snapshot()["open"] >= a.clients * 0.98, interval=0.5)
        snap = self.snapshot()
        per = {r.name: snap["replicas"].get(r.instance, {}).get("open", 0) for r in initial}
        check(connected, f"the client fleet connected: {snap['open']}/{a.clients} open "
                         f"({', '.join(f'{k} {v}' for k, v in per.items())})")
        self.baseline()
        self.deploy(initial)
        self.kill_phase()
        self.crash_loop()
        self.final_checks()
        self.print_tables(time.time() - t0)

    def baseline(self):
        a = self.a
        t0 = time.time()
        self.events["baseline"] = t0
        phase(f"baseline: {a.baseline:.0f} s of healthy traffic, alerts polled every 1 s")
        time.sleep(a.baseline)
        t1 = time.time()
        self.events["baseline_end"] = t1
        fired = self.seen_alerts(t0, t1, ("firing", "pending"))
        check(not fired, "no alert firing or pending during the baseline",
              "; ".join(f"{k} {sorted(v)}" for k, v in fired.items()))
        posts = self.hook_alerts(0, status=None)
        check(not posts, "the webhook received nothing up to the end of the baseline",
              f"{len(posts)} alerts, first {json.dumps(posts[0][1])[:300] if posts else ''}")
        closes = scalar(self.prom, f'job_role:websocket_closes:rate5m{{job="{a.job}",role="server"}}')
        check(closes > 0.1, "the fleet's churn passes the ratio alerts' traffic guard "
                            "(job_role:websocket_closes:rate5m > 0.1/s)", f"{closes:.2f}/s")
        snap = self.snapshot()
        active = scalar(self.prom, f'sum({self.sel("websocket_connections_active", role="server")})')
        check(abs(active - snap["open"]) <= max(5, 0.03 * a.clients),
              f"websocket_connections_active summed over the replicas ({active:.0f}) matches the "
              f"clients' open connections ({snap['open']}) within max(5, 3%)")
        m = snap["messages"]
        note(f"server ends {closes:.1f}/s; messages sent {m['sent']}, echoed {m['echoed']}, "
             f"mismatched {m['mismatched']}, echo timeouts {m['echo_timeouts']}")
        self.table.append((f"baseline {a.baseline:.0f} s", "no alert pending or firing; webhook empty",
                           f"{sum(len(v) for v in fired.values())} alerts, {len(posts)} posted; "
                           f"{snap['open']} clients open, ends {closes:.1f}/s"))

    def deploy(self, old):
        a = self.a
        phase("graceful rolling deploy: for each replica, its replacement joins, the old one is "
              "marked not ready, gets SIGTERM, drains with 1001 and exits; then it leaves the file")
        t0 = time.time()
        self.events["deploy"] = t0
        fresh = []
        for r in old:
            new = self.new_replica(f"{r.name}b")
            self.start(new)
            self.join(new)
            if not self.wait_up(new):
                fail(f"Prometheus scraped {new.name} ({new.instance}) within 15 s")
            self.set_ready(r, False)
            time.sleep(0.3)  # the clients' next connects already avoid it
            before = self.snapshot()
            n_open = before["replicas"].get(r.instance, {}).get("open", 0)
            offset = os.path.getsize(r.log)
            t_term = time.time()
            r.proc.send_signal(signal.SIGTERM)
            bound = 10 + 15 + 5  # --grace default + --linger default + slack
            rc = self.wait_exit(r.proc, bound)
            t_exit = time.time()
            r.lives[-1][1] = t_exit
            self.leave(r)
            t_left = time.time()
            text = log_text(r.log, offset)
            check(rc == 0, f"{r.name} ({'paced ' + str(a.pace) + ' s' if r.flags else 'unpaced'}, "
                           f"{n_open} clients) exited with status 0 after SIGTERM "
                           f"({t_exit - t_term:.2f} s to exit)",
                  f"still running after {bound} s" if rc is None else f"status {rc}")
            if rc is None:
                self.kill(r)
            self.drains.append({"r": r, "new": new, "open": n_open, "t_term": t_term,
                                "t_exit": t_exit, "t_left": t_left, "rc": rc, "log": text,
                                "paced": bool(r.flags)})
            fresh.append(new)
            time.sleep(a.settle)
        t1 = time.time()
        self.events["deploy_end"] = t1
        note(f"deploy took {t1 - t0:.1f} s; watching alerts {a.post_deploy:.0f} s more "
             "(every CI `for:` is 5 s)")
        time.sleep(a.post_deploy)
        t2 = time.time()
        snap = self.snapshot()
        for d in self.drains:
            self.check_drain(d, snap)
        fired = self.seen_alerts(t0, t2)
        check(not fired, "no alert fired during the rolling deploy (Prometheus polled every 1 s)",
              "; ".join(f"{k} {sorted(v)}" for k, v in fired.items()))
        pend = self.seen_alerts(t0, t2, ("pending",))
        if pend:
            note("pending at some point during the deploy (never fired): " + ", ".join(sorted(pend)))
        posts = self.hook_alerts(0, status=None)
        check(not posts, "the webhook received nothing during the rolling deploy",
              "; ".join(f"{p[1]['labels'].get('alertname')} {p[1]['status']}" for p in posts[:5]))
        downs = [d["down"] for d in self.drains if "down" in d]
        worst = max(downs, default=(0, 0.0), key=lambda x: x[1])
        self.table.append(("rolling deploy: alerts", "none fires, nothing posted",
                           f"{len(fired)} fired, pending: {', '.join(sorted(pend)) or 'none'}; "
                           f"{len(posts)} posted; up == 0 after an exit for up to "
                           f"{worst[0]} scrapes ({worst[1]:.1f} s)"))
        self.check_opened_panel("rolling deploy", t0, t2, snap)
        self.pacing_table(snap)
        self.live = fresh

    def check_drain(self, d, snap):
        """One drained replica: its report, Prometheus' final values for its instance and what
        the clients saw from it agree."""
        r = d["r"]
        inst = r.instance
        c = snap["replicas"].get(inst, {"ends": {}, "ok": 0, "failed": {}, "end_times": {}})
        rep = parse_report(d["log"])
        label = f"{r.name} ({'paced' if d['paced'] else 'unpaced'})"
        check(rep is not None, f"{label}: its log has the shutdown report (a `drained` line)",
              f"log tail:\n{d['log'][-1500:]}")
        served = re.search(r"last scrape", d["log"]) and \
            not re.search(r"no scrape within the linger bound", d["log"])
        check(served, f"{label}: its log says the last scrape was served before it exited "
                      "(the final values reached Prometheus)",
              f"log tail:\n{d['log'][-800:]}")
        shutdown = self.final("websocket_closes_total", inst, role="server", cause="shutdown")
        frames = self.final("websocket_close_frames_total", inst, role="server", direction="sent",
                            code="going_away")
        opened = self.final("websocket_connections_opened_total", inst, role="server")
        ends = self.final("websocket_closes_total", inst, role="server")
        refused = self.final("websocket_handshakes_total", inst, role="server", outcome="rejected")
        seen1001 = c["ends"].get("1001", 0)
        t = d["t_term"]
        # Connections the clients were closing themselves (their lifetime over) while the drain
        # ran keep their own cause: the report lists them, the shutdown ends do not.
        closing = sum(1 for x in c["end_times"].get("client_close", [])
                      if t - 1 <= x <= d["t_exit"])
        check(frames == seen1001,
              f"{label}: 1001 frames sent in Prometheus (instance {inst}) = 1001 Close frames the "
              f"clients got from it: {frames:.0f} = {seen1001}")
        check(shutdown == frames,
              f"{label}: shutdown ends in Prometheus = its 1001 frames: {shutdown:.0f} = {frames:.0f}")
        if rep is not None:
            gap = rep["connections"] - shutdown
            check(0 <= gap <= closing,
                  f"{label}: the report's {rep['connections']} connections = its shutdown ends "
                  f"{shutdown:.0f} + the connections already closing by the clients "
                  f"(0..{closing}, the clients' own closes from 1 s before SIGTERM to the exit)",
                  f"difference {gap:.0f}")
            rep_refused = rep.get("refused", 0)
            seen503 = c["failed"].get("http_503", 0)
            note(f"{label}: report {rep['text']!r}; 503 refusals: report {rep_refused}, "
                 f"Prometheus rejected handshakes {refused:.0f}, clients {seen503}")
        n_ends = sum(c["ends"].values())
        check(opened == c["ok"] and ends == n_ends,
              f"{label}: every connection counted at both ends: opened {opened:.0f} (clients' "
              f"connects {c['ok']}), ended {ends:.0f} (clients saw {n_ends} ends: "
              f"{dict(sorted(c['ends'].items()))})")
        # After the exit, Prometheus scrapes the target (up == 0) until the discovery change
        # reaches its scrape manager (throttled to every 5 s, twice over in Prometheus 2.42).
        ups = sorted(p for vals in samples(self.prom, self.sel("up", inst)).values() for p in vals)
        downs = [t_ for t_, v in ups if v == 0 and t_ >= d["t_exit"] - 0.5]
        last_up = ups[-1][0] if ups else float("nan")
        d["down"] = (len(downs), last_up - d["t_exit"])
        note(f"{label}: {len(downs)} scrapes with up == 0 after its exit; last scrape of the "
             f"target {last_up - d['t_exit']:.1f} s after the exit (left the targets file "
             f"{d['t_left'] - d['t_exit']:.2f} s after it)")
        d.update(shutdown=shutdown, frames=frames, seen1001=seen1001,
                 report=rep["connections"] if rep else None)
        self.table.append((f"drain {r.name} -> {d['new'].name} "
                           f"({'paced ' + str(self.a.pace) + ' s' if d['paced'] else 'unpaced'})",
                           "exit 0; report = Prometheus 1001s = clients' 1001s",
                           f"exit {d['rc']} in {d['t_exit'] - d['t_term']:.1f} s; "
                           f"{d['open']} open; report {rep['connections'] if rep else '?'}, "
                           f"Prometheus {shutdown:.0f} shutdown / {frames:.0f} frames, "
                           f"clients {seen1001}"))

    def pacing_table(self, snap):
        """Survivors' peak accept rate after each drain: client-side connect timestamps per
        100 ms window, and the survivors' opened counters per scrape (1 s)."""
        rows = []
        for d in self.drains:
            r = d["r"]
            t0 = d["t_term"]
            t1 = t0 + (self.a.pace if d["paced"] else 0) + 2
            ts = [x for inst, rec in snap["replicas"].items() if inst != r.instance
                  for x in rec["connects"] if t0 <= x <= t1]
            bins = collections.Counter(int((x - t0) * 10) for x in ts)
            peak = max(bins.values(), default=0) * 10
            ends = sorted(x for x in snap["replicas"].get(r.instance, {}).get("end_times", {})
                          .get("1001", []) if x >= t0 - 1)
            spread = (ends[-1] - ends[0]) if len(ends) > 1 else 0.0
            prom_peak = self.prom_peak(r, t0, t1)
            rows.append((d, peak, prom_peak, len(ts), spread))
            d["peak"] = peak
        print()
        print("  paced drain: survivors' peak accept rate after SIGTERM")
        print(f"  {'drained':<10} {'pace':>6} {'clients':>8} {'1001s spread':>13} "
              f"{'reconnects':>11} {'peak /s (100 ms)':>17} {'peak /s (scrapes)':>18}")
        for d, peak, prom_peak, n, spread in rows:
            print(f"  {d['r'].name:<10} {(str(self.a.pace) + ' s') if d['paced'] else '-':>6} "
                  f"{d['open']:>8} {spread:>11.2f} s {n:>11} {peak:>17.0f} {prom_peak:>18.0f}")
        print(flush=True)
        paced = [x for x in rows if x[0]["paced"]]
        unpaced = [x for x in rows if not x[0]["paced"]]
        if paced and unpaced:
            p = paced[0][1]
            u = min(x[1] for x in unpaced)
            check(p < u, f"paced drain ({self.a.pace} s) peaks lower at the survivors than an "
                         f"unpaced one: {p:.0f}/s < {u:.0f}/s (client connects per 100 ms)")
            self.table.append(("paced vs unpaced drain", "paced peak < unpaced peak",
                               f"paced {p:.0f}/s, unpaced " +
                               ", ".join(f"{x[1]:.0f}/s" for x in unpaced) +
                               " (survivors' connects per 100 ms)"))
            self.pacing = (p, [x[1] for x in unpaced])

    def prom_peak(self, r, t0, t1):
        """Peak of the survivors' opened counters: increments per scrape, summed per second."""
        try:
            ser = samples(self.prom, f'websocket_connections_opened_total{{job="{self.a.job}", '
                                     f'role="server", instance!="{r.instance}"}}', "5m")
        except (OSError, urllib.error.URLError, RuntimeError, ValueError):
            return float("nan")
        per_sec = collections.Counter()
        for vals in ser.values():
            for (ta, va), (tb, vb) in zip(vals, vals[1:]):
                if t0 <= tb <= t1 + 1 and vb >= va:
                    per_sec[int(tb)] += (vb - va) / max(0.5, tb - ta)
        return max(per_sec.values(), default=0.0)

    def check_opened_panel(self, what, t0, t1, snap):
        """The dashboard's opened-per-second query over [t0, t1] against the clients' real
        connect rate over the same windows: no spike where a series starts from zero or resets."""
        dash = json.load(open(self.a.dashboard, encoding="utf-8"))
        target = next((t for p, t in ea.panel_targets(dash)
                       if "websocket_connections_opened_total" in t["expr"]
                       and "rate(" in t["expr"]), None)
        if not check(target, "the dashboard has an opened-per-second query"):
            return
        expr, unknown = ea.substitute(target["expr"], {
            "job": ea.regex_value(self.a.job), "instance": ".*", "role": "server",
            "endpoint": ".*", "datasource": "prometheus"})
        if not check(not unknown, "the opened-per-second query's variables are known", unknown):
            return
        win = ea.seconds(ea.BUILTINS["__rate_interval"])
        res = query_range(self.prom, expr, t0, t1)
        panel = [v for vals in res.values() for _, v in vals]
        panel_max = max(panel, default=0.0)
        ts = sorted(x for rec in snap["replicas"].values() for x in rec["connects"])
        client_max = 0.0
        t = t0
        while t <= t1:
            n = sum(1 for x in ts if t - win < x <= t)
            client_max = max(client_max, n / win)
            t += 1
        naive = query_range(self.prom, f'rate(sum by (job) ({self.sel("websocket_connections_opened_total", role="server")})[{win}s:1s])', t0, t1)
        naive_max = max((v for vals in naive.values() for _, v in vals), default=0.0)
        bound = 1.25 * client_max + 1
        check(0.5 * client_max <= panel_max <= bound,
              f"{what}: the dashboard's opened-per-second panel peaks at {panel_max:.1f}/s, within "
              f"[0.5, 1.25] x the clients' real peak {client_max:.1f}/s + 1 (windows "
              f"{win:.0f} s): no spike at the counters' starts and resets")
        note(f"{what}: a rate of the summed counter instead (the mistake rate() per series "
             f"avoids) would peak at {naive_max:.1f}/s")
        self.table.append((f"{what}: opened/s panel", f"<= 1.25 x clients' {client_max:.1f}/s + 1",
                           f"max {panel_max:.1f}/s (rate of the sum: {naive_max:.1f}/s)"))

    def ratio_alerts(self):
        return sorted(n for n in self.rules
                      if n not in ("WebSocketTargetsDown", "WebSocketInstanceRestarting"))

    def kill_phase(self):
        a = self.a
        victim = self.live[0]
        phase(f"SIGKILL {victim.name} ({victim.instance}); it stays in the targets file, down")
        before = self.snapshot()
        n_open = before["replicas"].get(victim.instance, {}).get("open", 0)
        t_kill = time.time()
        self.events["kill"] = t_kill
        self.kill(victim)
        t_fire, t_hook, hook = self.wait_alert("WebSocketTargetsDown", t_kill, a.alert_timeout)
        if self.has_rule("WebSocketTargetsDown"):
            check(t_fire is not None, f"WebSocketTargetsDown fires in Prometheus for job {a.job}"
                  + (f" ({t_fire:.1f} s after the kill)" if t_fire else ""))
            check(hook is not None, "WebSocketTargetsDown reaches the webhook through Alertmanager"
                  + (f" ({t_hook:.1f} s after the kill)" if t_hook else ""))
            if hook:
                note(f"webhook: {hook['labels']} {hook['annotations'].get('summary', '')!r}")
            listed = len(self.entries)
            if t_fire is not None:
                check(abs(self.fired_value - 100 / listed) < 0.01,
                      f"WebSocketTargetsDown's value is the killed replica's share: "
                      f"{self.fired_value:.1f}% = 1 of the {listed} listed targets")
        time.sleep(2)
        after = self.snapshot()
        c = after["replicas"].get(victim.instance, {})
        cb = before["replicas"].get(victim.instance, {})
        ends1006 = c.get("ends", {}).get("1006", 0) - cb.get("ends", {}).get("1006", 0)
        refused = c.get("failed", {}).get("refused", 0) - cb.get("failed", {}).get("refused", 0)
        check(abs(ends1006 - n_open) <= 3,
              f"the clients of the killed replica saw their connections end without a Close "
              f"frame (1006): {ends1006}, open just before the kill: {n_open} (within 3)")
        note(f"connects refused by the dead replica since (clients retry elsewhere after a "
             f"backoff): {refused}")
        self.events["kill_end"] = time.time()
        self.table.append((f"SIGKILL {victim.name} (left down, still listed)",
                           "WebSocketTargetsDown at the webhook; clients see 1006",
                           (f"firing {t_fire:.1f} s, webhook {t_hook:.1f} s after the kill"
                            if t_hook else "not at the webhook" if self.has_rule("WebSocketTargetsDown")
                            else "rule missing") + f"; 1006 x{ends1006} ({n_open} open), "
                           f"{refused} refused"))
        self.victim = victim

    def crash_loop(self):
        a = self.a
        r = self.live[1]
        phase(f"crash loop: {r.name} ({r.instance}) SIGKILLed and restarted on the same ports "
              f"every {a.crash_every:.0f} s, {a.crash_kills} times; the last restart stays up")
        t0 = time.time()
        self.events["crash"] = t0
        starts = []
        for k in range(a.crash_kills):
            time.sleep(a.crash_every)
            self.kill(r)
            self.start(r)
            starts.append(time.time())
        self.events["crash_end"] = time.time()
        t_fire, t_hook, hook = self.wait_alert("WebSocketInstanceRestarting", t0,
                                               a.alert_timeout, instance=r.instance)
        if self.has_rule("WebSocketInstanceRestarting"):
            check(t_fire is not None, f"WebSocketInstanceRestarting fires in Prometheus for "
                  f"{r.instance}" + (f" ({t_fire:.1f} s after the loop began)" if t_fire else ""))
            check(hook is not None, "WebSocketInstanceRestarting reaches the webhook through "
                  "Alertmanager" + (f" ({t_hook:.1f} s after the loop began)" if t_hook else ""))
            if hook:
                check(hook["labels"].get("instance", r.instance) == r.instance,
                      f"the webhook's WebSocketInstanceRestarting names instance "
                      f"{hook['labels'].get('instance', '(no instance label)')}")
                note(f"webhook: {hook['labels']} {hook['annotations'].get('summary', '')!r}")
        # The last restart is scraped within a second or two; then every restart is in.
        last_start = r.lives[-1][0]
        ea.wait_until("the last restart scraped", 10, lambda: scalar(
            self.prom, f'{self.sel("process_start_time_seconds", r.instance)} > {last_start - 1:.3f}',
            default=0) > 0, interval=0.5)
        changes = scalar(self.prom, f'changes({self.sel("process_start_time_seconds", r.instance)}[5m])')
        restored = self.wait_up(r, 10) and ea.wait_until(
            "clients back on the restored replica", 10,
            lambda: self.snapshot()["replicas"].get(r.instance, {}).get("open", 0) > 0)
        check(restored, f"{r.name} restored after the loop: up == 1 and clients connected to it")
        check(changes == a.crash_kills,
              f"process_start_time_seconds of {r.instance} changed {changes:.0f} times in "
              f"Prometheus: once per restart ({a.crash_kills})")
        self.events["crash_done"] = time.time()
        self.table.append((f"crash loop {r.name} x{a.crash_kills} (same port)",
                           "WebSocketInstanceRestarting at the webhook",
                           (f"firing {t_fire:.1f} s, webhook {t_hook:.1f} s after the loop began"
                            if t_hook else "not at the webhook"
                            if self.has_rule("WebSocketInstanceRestarting") else "rule missing")
                           + f"; {changes:.0f} start-time changes"))
        self.looped = r

    def final_checks(self):
        a = self.a
        phase("whole run: alerts that must stay quiet, the counts at both ends")
        t_end = time.time()
        snap = self.snapshot()
        # The traffic-guarded ratio alerts (and every other one) stay quiet when replicas vanish.
        quiet = [n for n in self.ratio_alerts()]
        fired = self.seen_alerts(self.events["kill"], t_end)
        loud = {k: v for k, v in fired.items() if k in quiet}
        posted = sorted({x[1]["labels"].get("alertname") for x in self.hook_alerts(0)
                         if x[1]["labels"].get("alertname") in quiet})
        closes = scalar(self.prom, f'job_role:websocket_closes:rate5m{{job="{a.job}",role="server"}}')
        check(not loud and not posted,
              f"none of the other {len(quiet)} alerts (the traffic-guarded ratio alerts, "
              f"WebSocketJobAbsent, ...) fired while replicas were killed and crash-looping, with "
              f"the traffic guard passed ({closes:.1f} ends/s)",
              f"fired: {dict(loud)}; posted: {posted}")
        self.table.append(("kill + crash loop: other alerts",
                           "ratio alerts and WebSocketJobAbsent quiet",
                           f"{len(loud)} fired, {len(posted)} posted ({closes:.1f} ends/s)"))
        self.check_opened_panel("crash loop", self.events["crash"], t_end, snap)
        # opened_total over every instance and every process lifetime against the clients.
        total_prom = total_client = slack = lost = 0
        rows = []
        for r in self.replicas:
            ser = samples(self.prom, self.sel("websocket_connections_opened_total", r.instance,
                                              role="server"), "10m")
            pts = sorted(p for vals in ser.values() for p in vals)
            c = snap["replicas"].get(r.instance, {"connects": [], "ok": 0})
            prom_r = client_r = 0
            lives = []
            for start, end in r.lives:
                life = [(t, v) for t, v in pts if t >= start and (end is None or t <= end)]
                if not life:
                    continue
                t_last, v_last = life[-1]
                prom_r += v_last
                mine = [x for x in c["connects"] if x >= start and (end is None or x <= end)]
                # The lifetime's last sample counts the connects before its scrape; those after
                # it were never scraped (a SIGKILL's last second, or the fleet's connects since
                # the latest scrape). The server counts a connect before the client sees its
                # 101, so the clients' connects within 0.3 s of the scrape may be either side.
                client_r += sum(1 for x in mine if x <= t_last)
                lost += sum(1 for x in mine if x > t_last)
                slack += sum(1 for x in mine if abs(x - t_last) <= 0.3)
                b = self.events["baseline"]
                span = f"{start - b:+.2f}..{'' if end is None else format(end - b, '+.2f')} s"
                lives.append(f"{span}: {len(life)} samples, first {life[0][1]:.0f} at "
                             f"{life[0][0] - start:+.2f} s, last {v_last:.0f} at "
                             f"{t_last - start:+.2f} s; clients {len(mine)}")
            rows.append((r.name, r.instance, prom_r, client_r, lives))
            total_prom += prom_r
            total_client += client_r
        gap = total_client - total_prom
        check(abs(gap) <= slack,
              f"opened_total over every instance and lifetime ({total_prom:.0f}) = the clients' "
              f"connects before each lifetime's last scrape ({total_client}; {lost} more came "
              f"after it), within the {slack} connects within 0.3 s of a last scrape",
              f"difference {gap:.0f}")
        for name, inst, p, c, lives in rows:
            note(f"  {name:<4} {inst}: opened_total {p:.0f}, client connects {c}")
            if len(lives) > 1 or abs(p - c) > 3:
                for life in lives:
                    note("       lifetime " + life)
        self.table.append(("opened_total vs client connects",
                           f"equal within {slack} (connects near a last scrape)",
                           f"Prometheus {total_prom:.0f}, clients {total_client}, diff {gap:.0f} "
                           f"({lost} connects after a last scrape)"))
        m = snap["messages"]
        check(m["mismatched"] == 0 and m["echoed"] > 0,
              f"every echo matched its message ({m['echoed']} echoed, {m['mismatched']} wrong, "
              f"{m['echo_timeouts']} timed out after 5 s)")
        absent = self.seen_alerts(0, t_end).get("WebSocketJobAbsent")
        if self.has_rule("WebSocketJobAbsent"):
            check(not absent, "WebSocketJobAbsent never fired (the job always had targets)",
                  sorted(absent or []))

    def print_tables(self, runtime):
        print()
        w1 = max(len(x[0]) for x in self.table)
        w2 = max(len(x[1]) for x in self.table)
        print(f"  {'scenario':<{w1}} | {'expected':<{w2}} | seen")
        print(f"  {'-' * w1}-+-{'-' * w2}-+-{'-' * 40}")
        for s, e, seen in self.table:
            print(f"  {s:<{w1}} | {e:<{w2}} | {seen}")
        print()
        print("  phase timings: " + ", ".join(
            f"{k} +{v - self.events['baseline']:.1f} s" for k, v in self.events.items()))
        print(f"  fleet test runtime {runtime:.0f} s", flush=True)
        ea.summary(f"fleet test: {runtime:.0f} s, pacing peaks "
                   f"{getattr(self, 'pacing', ('?', '?'))}")


def log_text(path, offset=0):
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return re.sub(r"\x1b\[[0-9;]*m", "", f.read().decode("utf-8", "replace"))
    except FileNotFoundError:
        return ""


def tail(path, n=20):
    return "\n".join(log_text(path).splitlines()[-n:])


def read_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (FileNotFoundError, ValueError):
        return {}


def parse_report(text):
    """The drain's report from a replica's log: the line with `drained` (or the library's
    `shutdown complete`), ShutdownReport's Display: `N connections in S s, clean K, ...,
    stragglers terminated T[, paced over P s][, handshakes refused R, cut C]`."""
    for line in text.splitlines():
        if "drained" not in line and "shutdown complete" not in line:
            continue
        m = re.search(r"(\d+) connections? in ([\d.]+) s", line)
        if not m:
            continue
        rep = {"connections": int(m.group(1)), "elapsed": float(m.group(2)),
               "text": line[m.start():].rstrip()}
        for key, pat in (("stragglers", r"stragglers terminated (\d+)"),
                         ("refused", r"handshakes refused (\d+)"),
                         ("clean", r"clean (\d+)")):
            mm = re.search(pat, line)
            if mm:
                rep[key] = int(mm.group(1))
        mm = re.search(r"paced over ([\d.]+) s", line)
        rep["paced_over"] = float(mm.group(1)) if mm else 0.0
        return rep
    return None


def cmd_ports(host, *ports):
    """Fails if a port is taken. Bound with SO_REUSEADDR, as the servers bind: a port that only
    has TIME-WAIT connections left (a previous run's drains close first) is free for them."""
    import socket

    taken = []
    for port in ports:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, int(port)))
            s.listen()
        except OSError:
            taken.append(port)
        finally:
            s.close()
    if taken:
        print(f"ports already in use on {host}: {', '.join(taken)} (set E2E_FLEET_PORT_BASE to "
              "move every port of this test)", file=sys.stderr)
        return 1
    return 0


def cmd_run(argv):
    p = argparse.ArgumentParser(prog="e2e_fleet.py run")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--base", type=int, required=True)
    p.add_argument("--work", required=True)
    p.add_argument("--job", default="wsclose-fleet")
    p.add_argument("--echo-server", required=True)
    p.add_argument("--prometheus", default="prometheus")
    p.add_argument("--prometheus-yml", required=True)
    p.add_argument("--webhook-out", required=True)
    p.add_argument("--dashboard", default="dashboards/wsclose.json")
    p.add_argument("--clients", type=int, default=300)
    p.add_argument("--lifetime", type=float, nargs=2, default=(10.0, 30.0))
    p.add_argument("--baseline", type=float, default=20.0)
    p.add_argument("--pace", type=float, default=2.0)
    p.add_argument("--settle", type=float, default=4.0)
    p.add_argument("--post-deploy", type=float, default=8.0)
    p.add_argument("--crash-every", type=float, default=6.0)
    p.add_argument("--crash-kills", type=int, default=5)
    p.add_argument("--alert-timeout", type=float, default=45.0)
    args = p.parse_args(argv)
    test = Test(args)

    def on_term(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    try:
        test.run()
    except (OSError, urllib.error.URLError, RuntimeError, ValueError, KeyError) as e:
        fail(f"fleet test stopped: {type(e).__name__}: {e}")
    finally:
        test.poller_stop.set()
        test.stop_all()
    return 1 if COUNTS["fail"] or ea.FAILED else 0


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "clients":
        sys.exit(cmd_clients(*sys.argv[2:]))
    if len(sys.argv) >= 2 and sys.argv[1] == "ports":
        sys.exit(cmd_ports(*sys.argv[2:]))
    if len(sys.argv) >= 2 and sys.argv[1] == "run":
        sys.exit(cmd_run(sys.argv[2:]))
    print(__doc__, file=sys.stderr)
    sys.exit(2)
