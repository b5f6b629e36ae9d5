#!/usr/bin/env python3
"""Helpers for scripts/e2e-alerts.sh (the alerting end-to-end test). Standard library only.

    e2e_alerts.py ports HOST PORT...                     fail if a port is taken
    e2e_alerts.py rewrite-rules SRC DST                   CI copy of the rules (short windows)
    e2e_alerts.py rewrite-alertmanager SRC DST URL        CI copy of alertmanager.yml
    e2e_alerts.py webhook HOST PORT OUT                   webhook receiver (runs until killed)
    e2e_alerts.py wait-http URL TIMEOUT                   until URL answers 200
    e2e_alerts.py wait-up PROM JOB TIMEOUT                until up{job=JOB} == 1
    e2e_alerts.py check-setup PROM ALERTMANAGER_HOSTPORT  rules loaded and healthy, AM discovered
    e2e_alerts.py healthy PROM JOB SECS WEBHOOK_OUT       the healthy phase and its assertions
    e2e_alerts.py dashboard PROM DASH JOB INSTANCE MODE   every panel query returns data
    e2e_alerts.py unhealthy PROM JOB ALERT TIMEOUT WEBHOOK_OUT SINCE
                                                          ALERT fires and reaches the webhook
                                                          (run once per alert of the phase)

PROM is the Prometheus base URL (http://127.0.0.1:19090). Check results are printed as lines
starting with `ok    ` or `FAIL  `; e2e-alerts.sh counts them. Exit status 1 when a check
failed.
"""
import datetime
import http.server
import json
import math
import os
import re
import socket
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

FAILED = False


def ok(msg):
    print(f"ok    {msg}", flush=True)


def fail(msg):
    global FAILED
    FAILED = True
    print(f"FAIL  {msg}", flush=True)


def check(cond, msg, detail=None):
    if cond:
        ok(msg)
    else:
        fail(msg if detail is None else f"{msg}: {detail}")
    return cond


def note(msg):
    print(f"      {msg}", flush=True)


def summary(msg):
    """A line e2e-alerts.sh repeats in its final summary."""
    print(f"      summary: {msg}", flush=True)


# --- the metric contract --------------------------------------------------------------------

CONTRACT_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "dashboards",
                             "contract.json")


def contract():
    """dashboards/contract.json: every instrument and label, generated from the crate's table."""
    with open(CONTRACT_PATH, encoding="utf-8") as f:
        return json.load(f)


def label_values(name):
    return next(l["values"] for l in contract()["labels"] if l["name"] == name)


# --- Prometheus HTTP API ---------------------------------------------------------------------


def get_json(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.load(resp)


def api(prom, path, **params):
    url = f"{prom}{path}"
    if params:
        url += "?" + urllib.parse.urlencode(params)
    body = get_json(url)
    if body.get("status") != "success":
        raise RuntimeError(f"{path}: {body}")
    return body["data"]


def query(prom, expr):
    """Instant query; returns the result vector (list of {metric, value})."""
    data = api(prom, "/api/v1/query", query=expr)
    if data["resultType"] != "vector":
        raise RuntimeError(f"unexpected result type {data['resultType']} for {expr}")
    return data["result"]


def alerts(prom):
    return api(prom, "/api/v1/alerts")["alerts"]


def fmt_alert(a):
    labels = a["labels"]
    extra = ",".join(f"{k}={v}" for k, v in sorted(labels.items()) if k != "alertname")
    return f"{labels.get('alertname')}{{{extra}}} {a['state']}"


def wait_until(what, timeout, fn, interval=0.5):
    """Calls fn until it returns a truthy value or timeout seconds pass; returns the value."""
    deadline = time.monotonic() + timeout
    last_err = None
    while True:
        try:
            v = fn()
            if v:
                return v
        except (OSError, urllib.error.URLError, RuntimeError, ValueError) as e:
            last_err = e
        if time.monotonic() >= deadline:
            note(f"gave up waiting for {what} after {timeout:.0f} s" +
                 (f" (last error: {last_err})" if last_err else ""))
            return None
        time.sleep(interval)


# --- rewriting the shipped configuration for CI speed ----------------------------------------

UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
DURATION = r"(?:\d+(?:ms|[smhdwy]))+"


def seconds(d):
    return sum(int(n) * UNITS[u] for n, u in re.findall(r"(\d+)(ms|[smhdwy])", d))


# Range windows and offsets shrink 15 times ([5m] -> [20s], [10m] -> [40s], [1h] -> [240s]),
# keeping their ratios (the 1 h burn-rate window stays 12 times the 5 m one). Every `for:`
# becomes 5 s: long enough to need more than one evaluation, short enough for CI.
WINDOW_FACTOR = 15
FOR_CI = "5s"


def rewrite_rules(src, dst):
    text = open(src, encoding="utf-8").read()
    changes = {}

    def record(kind, old, new):
        key = (kind, old, new)
        changes[key] = changes.get(key, 0) + 1

    def window(m):
        old = m.group(1)
        new = f"{max(1, round(seconds(old) / WINDOW_FACTOR))}s"
        record("range", f"[{old}]", f"[{new}]")
        return f"[{new}]"

    def offset(m):
        old = m.group(1)
        new = f"{max(1, round(seconds(old) / WINDOW_FACTOR))}s"
        record("offset", f"offset {old}", f"offset {new}")
        return f"offset {new}"

    def for_(m):
        record("for", f"for: {m.group(2)}", f"for: {FOR_CI}")
        return f"{m.group(1)}for: {FOR_CI}{m.group(3)}"

    def keep_firing_for(m):
        record("keep_firing_for", f"keep_firing_for: {m.group(2)}", f"keep_firing_for: {FOR_CI}")
        return f"{m.group(1)}keep_firing_for: {FOR_CI}{m.group(3)}"

    # Comments are left alone (they are not rules); only rule lines are rewritten.
    out = []
    for line in text.splitlines(keepends=True):
        if line.lstrip().startswith("#"):
            out.append(line)
            continue
        line = re.sub(rf"^([ \t]*)for: ({DURATION})([ \t]*\r?\n?)$", for_, line)
        line = re.sub(rf"^([ \t]*)keep_firing_for: ({DURATION})([ \t]*\r?\n?)$", keep_firing_for,
                      line)
        line = re.sub(rf"\[({DURATION})\]", window, line)
        line = re.sub(rf"\boffset ({DURATION})\b", offset, line)
        out.append(line)
    new = "".join(out)

    # Proof that only durations changed: with every `for`, `keep_firing_for`, range and offset
    # duration replaced by a placeholder, the shipped file and the copy are identical.
    def normalise(t):
        t = re.sub(rf"(?m)^([ \t]*)for: {DURATION}[ \t]*$", r"\1for: D", t)
        t = re.sub(rf"(?m)^([ \t]*)keep_firing_for: {DURATION}[ \t]*$", r"\1keep_firing_for: D", t)
        t = re.sub(rf"\[{DURATION}\]", "[D]", t)
        return re.sub(rf"\boffset {DURATION}\b", "offset D", t)

    if normalise(new) != normalise(text):
        fail("rewritten rules differ from the shipped ones in more than durations")
        return 1
    if not any(k[0] == "for" for k in changes) or not any(k[0] == "range" for k in changes):
        fail("the rewrite found no `for:` or no range window: has rules.yaml changed shape?")
        return 1
    with open(dst, "w", encoding="utf-8") as f:
        f.write(new)
    note(f"CI copy of {src} (expressions unchanged apart from these durations):")
    w_old = max(len(k[1]) for k in changes)
    w_new = max(len(k[2]) for k in changes)
    for (kind, old, new_), n in sorted(changes.items()):
        note(f"  {old:<{w_old}} -> {new_:<{w_new}} x{n}")
    ok(f"rules copy differs from {src} only in `for`, `keep_firing_for`, range and offset "
       "durations")
    return 0


def rewrite_alertmanager(src, dst, url):
    text = open(src, encoding="utf-8").read()
    edits = [
        (r"(?m)^(\s*)group_wait: \S+", r"\1group_wait: 1s"),
        (r"(?m)^(\s*)group_interval: \S+", r"\1group_interval: 2s"),
        (r'(?m)^(\s*)- url: "[^"]*"', rf'\1- url: "{url}"'),
    ]
    counts = []
    for pattern, repl in edits:
        text, n = re.subn(pattern, repl, text)
        counts.append(n)
    if min(counts) == 0:
        fail(f"rewrite of {src} found nothing to change for one of {edits}: has it changed shape?")
        return 1
    with open(dst, "w", encoding="utf-8") as f:
        f.write(text)
    note(f"CI copy of {src}: group_wait 1s (x{counts[0]}), group_interval 2s (x{counts[1]}), "
         f"webhook url {url} (x{counts[2]}); routes and inhibit rules unchanged")
    return 0


# --- webhook receiver -----------------------------------------------------------------------


def webhook(host, port, out):
    lock = threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            try:
                doc = json.loads(body)
            except ValueError:
                self.send_error(400, "body is not JSON")
                return
            with lock, open(out, "a", encoding="utf-8") as f:
                f.write(json.dumps({"path": self.path, "received": time.time(), "body": doc}) + "\n")
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self):  # readiness probe
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, fmt, *args):
            sys.stderr.write("webhook: " + (fmt % args) + "\n")
            sys.stderr.flush()

    open(out, "a").close()
    server = http.server.ThreadingHTTPServer((host, int(port)), Handler)
    server.serve_forever()


def webhook_posts(out):
    try:
        with open(out, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        return []


# --- subcommands ----------------------------------------------------------------------------


def cmd_ports(host, *ports):
    taken = []
    for p in ports:
        s = socket.socket()
        try:
            s.bind((host, int(p)))
        except OSError:
            taken.append(p)
        finally:
            s.close()
    if taken:
        print(f"ports already in use on {host}: {', '.join(taken)} (set E2E_PORT_BASE to move "
              "every port of this test)", file=sys.stderr)
        return 1
    return 0


def cmd_wait_http(url, timeout):
    def ready():
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200

    return 0 if wait_until(url, float(timeout), ready) else 1


def cmd_wait_up(prom, job, timeout):
    start = time.monotonic()
    res = wait_until(f'up{{job="{job}"}} == 1', float(timeout),
                     lambda: query(prom, f'up{{job="{job}"}} == 1'))
    check(res, f'first successful scrape of job {job} (up == 1) after '
          f'{time.monotonic() - start:.1f} s')
    return 0 if res else 1


def cmd_check_setup(prom, am_hostport):
    groups = api(prom, "/api/v1/rules")["groups"]
    rules = [r for g in groups for r in g["rules"]]
    n_alert = sum(r["type"] == "alerting" for r in rules)
    n_rec = sum(r["type"] == "recording" for r in rules)
    check(n_alert > 0 and n_rec > 0,
          f"Prometheus loaded the CI rules: {n_rec} recording, {n_alert} alerting")
    # Every rule must evaluate without error (a rewritten window could make an expression
    # invalid only at evaluation time). Wait until each has been evaluated at least once.

    def evaluated():
        rs = [r for g in api(prom, "/api/v1/rules")["groups"] for r in g["rules"]]
        return rs if all(r.get("health") in ("ok", "err") for r in rs) else None

    rs = wait_until("every rule evaluated", 10, evaluated) or []
    bad = [f"{r['name']}: {r.get('health')} {r.get('lastError', '')}" for r in rs
           if r.get("health") != "ok"]
    check(rs and not bad, "every rule evaluates without error", "; ".join(bad))
    am = wait_until("Alertmanager discovered", 10,
                    lambda: [a for a in api(prom, "/api/v1/alertmanagers")["activeAlertmanagers"]
                             if am_hostport in a["url"]])
    check(am, f"Prometheus sends alerts to the Alertmanager on {am_hostport}")
    return 1 if FAILED else 0


def cmd_healthy(prom, job, secs, out):
    secs = float(secs)
    start = time.monotonic()
    seen = {}  # alert -> set of states seen
    while True:
        for a in alerts(prom):
            seen.setdefault(fmt_alert(a).rsplit(" ", 1)[0], set()).add(a["state"])
        left = secs - (time.monotonic() - start)
        if left <= 0:
            break
        time.sleep(min(2.0, left))
    note(f"healthy traffic for {secs:.0f} s, alerts polled every 2 s")
    # The guard of the ratio alerts is passed, so their silence is not just low traffic.
    rate = query(prom, f'job_role:websocket_closes:rate5m{{job="{job}"}}')
    rates = {r["metric"].get("role"): float(r["value"][1]) for r in rate}
    check(rates.get("server", 0) > 0.1,
          "healthy traffic passes the alerts' minimum-traffic guard "
          "(job_role:websocket_closes:rate5m > 0.1/s)",
          f"rates {rates}")
    note("ends per second: " + ", ".join(f"{k} {v:.2f}" for k, v in sorted(rates.items())))
    ratio = query(prom, f'job_role:websocket_closes_unexpected:ratio_rate5m{{job="{job}"}}')
    vals = {r["metric"].get("role"): float(r["value"][1]) for r in ratio}
    check(vals and all(v == 0 for v in vals.values()),
          "unexpected-close ratio (recording rule) is present and 0 on healthy traffic",
          f"{vals}")
    # The handshake alerts' guard is passed too, and the failure ratio stays under their
    # threshold (the healthy fleet sends no malformed or stalled upgrades).
    hs = query(prom, f'job_role:websocket_handshakes:rate5m{{job="{job}", role="server"}}')
    hs_rate = float(hs[0]["value"][1]) if hs else 0.0
    check(hs_rate > 0.1,
          "healthy traffic passes the handshake alerts' guard "
          "(job_role:websocket_handshakes:rate5m > 0.1/s, server)", f"rate {hs_rate}")
    hs_ratio = query(prom,
                     f'job_role:websocket_handshakes_failed:ratio_rate5m{{job="{job}", role="server"}}')
    hs_vals = [float(r["value"][1]) for r in hs_ratio]
    check(hs_vals and hs_vals[0] < 0.05,
          "handshake failure ratio (recording rule) is present and under 5% on healthy traffic",
          f"{hs_vals}")
    note(f"server handshakes per second: {hs_rate:.2f}, failed or timed out: "
         f"{hs_vals[0] if hs_vals else float('nan'):.1%}")
    check_exported(prom, job)
    fired = sorted(k for k, states in seen.items() if "firing" in states)
    pending = sorted(k for k, states in seen.items() if states == {"pending"})
    check(not fired, "no alert fired during the healthy phase", ", ".join(fired))
    if pending:
        note("pending at some point (never fired): " + ", ".join(pending))
    now = alerts(prom)
    check(not now, "no alert firing or pending at the end of the healthy phase",
          ", ".join(fmt_alert(a) for a in now))
    posts = webhook_posts(out)
    check(not posts, "the webhook received nothing during the healthy phase",
          f"{len(posts)} posts, first: {json.dumps(posts[0])[:400] if posts else ''}")
    summary(f"healthy phase {secs:.0f} s: {len(fired)} alerts fired, {len(now)} firing or "
            f"pending at the end, {len(posts)} webhook posts; server ends "
            f"{rates.get('server', 0):.1f}/s, unexpected ratio {vals}; server handshakes "
            f"{hs_rate:.1f}/s, failed or timed out {hs_vals}")
    return 1 if FAILED else 0


def check_exported(prom, job):
    """The scraped series are the contract's: every instrument, each with its labels only."""
    want = {i["prometheus"]: i for i in contract()["instruments"]}
    res = query(prom, f'{{__name__=~"websocket_.*", job="{job}"}}')
    found, bad = set(), set()
    for r in res:
        name = r["metric"]["__name__"]
        base, extra = name, set()
        for suffix in ("_bucket", "_sum", "_count"):
            stem = name[: -len(suffix)]
            if name.endswith(suffix) and want.get(stem, {}).get("type") == "histogram":
                base, extra = stem, {"le"} if suffix == "_bucket" else set()
        if base not in want:
            bad.add(f"{name} is not in the contract")
            continue
        found.add(base)
        keys = set(r["metric"]) - {"__name__", "job", "instance"} - extra
        if not keys <= set(want[base]["labels"]):
            bad.add(f"{name} has labels {sorted(keys)}, the contract {want[base]['labels']}")
    missing = sorted(set(want) - found)
    check(not missing and not bad,
          f"the scraped websocket_* series are the contract's ({len(found)}/{len(want)} instruments)",
          "; ".join(sorted(bad) + [f"{m} missing" for m in missing]))


def regex_value(v):
    """A variable value as Grafana writes it into a PromQL regex matcher: regex metacharacters
    escaped, and the backslash doubled because the matcher is a PromQL string literal."""
    return re.sub(r"([\\.^$|?*+()\[\]{}-])", r"\\\\\1", v)


BUILTINS = {
    "__rate_interval": "20s",  # matches the CI rules' rewritten [5m] window
    "__interval": "2s",
    "__interval_ms": "2000",
    "__range": "60s",
    "__range_s": "60",
    "__range_ms": "60000",
}


def substitute(expr, variables):
    unknown = []

    def repl(m):
        name = m.group(1) or m.group(2) or m.group(3)
        if name in variables:
            return variables[name]
        if name in BUILTINS:
            return BUILTINS[name]
        unknown.append(name)
        return m.group(0)

    # $var, ${var}, ${var:format}, [[var]]
    out = re.sub(r"\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]|\$(\w+)", repl, expr)
    return out, unknown


def panel_targets(dash):
    def walk(panels):
        for p in panels:
            yield p
            yield from walk(p.get("panels", []))

    for p in walk(dash["panels"]):
        for t in p.get("targets", []):
            if t.get("expr") and not t.get("hide"):
                yield p, t


def cmd_dashboard(prom, dash_path, job, instance, mode):
    """mode: `selected` (job, instance and both roles selected; one line per query),
    `all` (every variable at All = .*; one summary line), `after-errors` (selected; one summary
    line, plus the unexpected-end ratio panel must show the errors)."""
    dash = json.load(open(dash_path, encoding="utf-8"))
    if mode == "all":
        variables = {"job": ".*", "instance": ".*", "role": ".*"}
    else:
        variables = {"job": regex_value(job), "instance": regex_value(instance),
                     "role": "(" + "|".join(label_values("role")) + ")"}
    variables["datasource"] = "prometheus"
    variables.setdefault("endpoint", ".*")  # static label; the demo sets none
    targets = list(panel_targets(dash))
    results = []
    for p, t in targets:
        label = f"panel {p['id']} {p['title']!r} {t.get('refId', '?')} ({t.get('legendFormat', '')})"
        expr, unknown = substitute(t["expr"], variables)
        if unknown:
            results.append((label, False, f"unknown variables {unknown}", []))
            continue
        try:
            res = query(prom, expr)
        except (OSError, urllib.error.URLError, RuntimeError) as e:
            detail = e.read().decode() if isinstance(e, urllib.error.HTTPError) else str(e)
            results.append((label, False, f"query failed: {detail} -- {expr}", []))
            continue
        values = [float(r["value"][1]) for r in res]
        finite = [v for v in values if not math.isnan(v)]
        good = bool(finite)
        detail = (f"{len(res)} series" if good else
                  "empty result" if not res else f"{len(res)} series, all NaN") + f" -- {expr}"
        results.append((label, good, detail, res))
    n_good = sum(r[1] for r in results)
    if mode == "selected":
        for label, good, detail, res in results:
            if good:
                ok(f"{label}: {len(res)} series")
            else:
                fail(f"{label}: {detail}")
    else:
        what = "every variable at All" if mode == "all" else "after the unhealthy phase"
        check(n_good == len(results) and results,
              f"{n_good}/{len(results)} dashboard queries return data ({what})",
              "; ".join(f"{label}: {detail}" for label, good, detail, _ in results if not good))
    summary(f"dashboard ({mode}): {n_good}/{len(results)} panel queries returned data")
    note(f"dashboard {dash_path}: {len(targets)} queries in "
         f"{len({p['id'] for p, _ in targets})} panels, {n_good} with data "
         f"(variables: {', '.join(f'{k}={v}' for k, v in variables.items())}, "
         f"$__rate_interval={BUILTINS['__rate_interval']})")
    if mode == "after-errors":
        ratio = [r for r in results if "Unexpected-end ratio" in r[0]]
        server = [float(s["value"][1]) for r in ratio for s in r[3]
                  if s["metric"].get("role") == "server"]
        check(server and server[0] > 0.05,
              "the dashboard's Unexpected-end ratio panel shows the errors (server > 5%)",
              f"server values {server}")
        if server:
            note(f"Unexpected-end ratio, server: {server[0]:.1%}")
        ratio = [r for r in results if "Handshake failure ratio" in r[0]]
        server = [float(s["value"][1]) for r in ratio for s in r[3]
                  if s["metric"].get("role") == "server"]
        check(server and server[0] > 0.05,
              "the dashboard's Handshake failure ratio panel shows the failures (server > 5%)",
              f"server values {server}")
        if server:
            note(f"Handshake failure ratio, server: {server[0]:.1%}")
    return 1 if FAILED else 0


def render_exact(template, labels):
    return re.sub(r"\{\{\s*\$labels\.(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), template)


def template_regex(template, labels):
    """A regex matching a rendered annotation: $labels.X substituted, other actions wildcards."""
    parts = re.split(r"(\{\{.*?\}\})", template)
    out = []
    for part in parts:
        m = re.fullmatch(r"\{\{\s*\$labels\.(\w+)\s*\}\}", part)
        if m:
            out.append(re.escape(labels.get(m.group(1), "")))
        elif part.startswith("{{"):
            out.append(r"\S+")  # $value | humanizePercentage, printf ...: one word
        else:
            out.append(re.escape(part))
    return "".join(out)


def parse_ts(ts):
    """RFC 3339 from Prometheus / Alertmanager (nanoseconds, Z) to a Unix timestamp."""
    m = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", ts)
    if not m:
        raise ValueError(f"unexpected timestamp {ts!r}")
    zone = "+00:00" if m.group(3) == "Z" else m.group(3)
    frac = (m.group(2) or "0")[:6].ljust(6, "0")
    return datetime.datetime.fromisoformat(f"{m.group(1)}.{frac}{zone}").timestamp()


def cmd_unhealthy(prom, job, alertname, timeout, out, since):
    """Waits for ALERT to become active after SINCE (Unix time the errors began), fire, and
    reach the webhook for role=server (the role that sees the invalid close codes, and the
    malformed and stalled upgrades)."""
    timeout = float(timeout)
    since = float(since)
    start = time.monotonic() - max(0.0, time.time() - since)
    rule = [r for g in api(prom, "/api/v1/rules")["groups"] for r in g["rules"]
            if r.get("name") == alertname and r["type"] == "alerting"]
    if not check(rule, f"rule {alertname} is loaded"):
        return 1
    rule = rule[0]

    def firing():
        return [a for a in alerts(prom) if a["labels"].get("alertname") == alertname
                and a["labels"].get("job") == job and a["labels"].get("role") == "server"
                and a["state"] == "firing" and parse_ts(a["activeAt"]) >= since]

    fired = wait_until(f"{alertname} firing", timeout, firing, interval=1)
    t_fire = time.monotonic() - start
    if not check(fired, f"{alertname} fires in Prometheus ({t_fire:.1f} s after the errors began)"):
        note("alerts now: " + ", ".join(fmt_alert(a) for a in alerts(prom)))
        return 1
    for a in fired:
        note(f"Prometheus: {fmt_alert(a)}, value {float(a['value']):.3f}, since {a['activeAt']}")

    def arrived():
        hits = []
        for post in webhook_posts(out):
            if post["received"] < since:
                continue
            for a in post["body"].get("alerts", []):
                if (a["labels"].get("alertname") == alertname and a["status"] == "firing"
                        and a["labels"].get("job") == job and a["labels"].get("role") == "server"
                        and parse_ts(a["startsAt"]) >= since):
                    hits.append((post, a))
        return hits

    left = max(5.0, timeout - (time.monotonic() - start))
    hits = wait_until(f"{alertname} at the webhook", left, arrived, interval=1)
    t_hook = time.monotonic() - start
    if not check(hits, f"{alertname} arrives at the webhook through Alertmanager "
                 f"({t_hook:.1f} s after the errors began)"):
        return 1
    post, a = hits[0]
    labels = a["labels"]
    want_labels = dict(rule["labels"])
    want_labels.update(alertname=alertname, job=job)
    want_labels["role"] = "server"
    check(all(labels.get(k) == v for k, v in want_labels.items()),
          "webhook alert labels: " + ", ".join(f"{k}={labels.get(k)}" for k in
                                               ("alertname", "severity", "job", "role")),
          f"want {want_labels}, got {labels}")
    ann = a.get("annotations", {})
    want_summary = render_exact(rule["annotations"]["summary"], labels)
    check(ann.get("summary") == want_summary, "webhook annotation summary is the rendered template",
          f"got {ann.get('summary')!r}, want {want_summary!r}")
    desc_re = template_regex(rule["annotations"]["description"], labels)
    check(re.fullmatch(desc_re, ann.get("description", "")) is not None and
          re.search(r"\d%", ann.get("description", "")),
          "webhook annotation description is the rendered template (with a percentage)",
          f"got {ann.get('description')!r}")
    check(ann.get("runbook_url") == rule["annotations"]["runbook_url"],
          f"webhook annotation runbook_url is {rule['annotations']['runbook_url']}",
          f"got {ann.get('runbook_url')!r}")
    summary(f"{alertname} (role=server): firing in Prometheus {t_fire:.1f} s and at the "
            f"webhook {t_hook:.1f} s after the errors began")
    body = post["body"]
    check(body.get("receiver") == "wsclose-webhook" and body.get("status") == "firing",
          f"webhook payload from receiver {body.get('receiver')}, status {body.get('status')}")

    print("--- webhook payload (the alert as it arrived):")
    excerpt = {k: body.get(k) for k in ("receiver", "status", "groupLabels", "version")}
    excerpt["alerts"] = [{k: a.get(k) for k in ("status", "labels", "annotations", "startsAt")}]
    print(json.dumps(excerpt, indent=2))
    others = sorted({fmt_alert(x) for x in alerts(prom)
                     if x["labels"].get("alertname") != alertname})
    if others:
        note("other alerts now (the fleet also produces timeouts): " + ", ".join(others))
    return 1 if FAILED else 0


COMMANDS = {
    "ports": cmd_ports,
    "rewrite-rules": rewrite_rules,
    "rewrite-alertmanager": rewrite_alertmanager,
    "webhook": webhook,
    "wait-http": cmd_wait_http,
    "wait-up": cmd_wait_up,
    "check-setup": cmd_check_setup,
    "healthy": cmd_healthy,
    "dashboard": cmd_dashboard,
    "unhealthy": cmd_unhealthy,
}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    try:
        sys.exit(COMMANDS[sys.argv[1]](*sys.argv[2:]) or 0)
    except (OSError, urllib.error.URLError, RuntimeError, ValueError, KeyError) as e:
        fail(f"{sys.argv[1]}: {type(e).__name__}: {e}")
        sys.exit(1)
