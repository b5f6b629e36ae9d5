#!/usr/bin/env python3
"""Reads Autobahn|Testsuite index.json reports and fails on regressions.

    autobahn_check.py EXPECTED ROLE=INDEX_JSON ...

EXPECTED (autobahn/expected-results.json) lists, per ROLE (a section: `server`, `client`,
`server-tokio-websockets`...), the two agents compared (`agents`: wsclose's, then the same
library used raw; by default wsclose and tokio-tungstenite), the minimum number of cases that
must run and every case whose behaviour is not strictly OK. A case not listed must be OK in both
`behavior` and `behaviorClose`. For each role this prints the counts per agent and exits 1 when,
for wsclose's agent:
  - fewer cases ran than expected,
  - a case's behaviour (or close behaviour) is worse than the expected one, or
  - a case's behaviour is worse than the raw baseline's in the same run.
wstest itself exits 0 even when cases fail, which is why this exists.
"""
import json
import sys

RANK = {"OK": 0, "INFORMATIONAL": 1, "NON-STRICT": 2, "UNIMPLEMENTED": 3, "WRONG CODE": 4, "FAILED": 5}
COLUMNS = ["OK", "NON-STRICT", "INFORMATIONAL", "FAILED"]
WSCLOSE = "wsclose"
BASELINE = "tokio-tungstenite"


def rank(b):
    return RANK.get(b, RANK["FAILED"])


def case_key(case):
    return tuple(int(p) for p in case.split("."))


def counts(results):
    c = dict.fromkeys(COLUMNS, 0)
    for r in results.values():
        b = r["behavior"]
        c[b if b in c else "FAILED"] += 1
    return c


def main():
    expected = json.load(open(sys.argv[1]))
    problems = []
    table = []
    for arg in sys.argv[2:]:
        role, path = arg.split("=", 1)
        try:
            index = json.load(open(path))
        except (OSError, ValueError) as e:
            problems.append("%s: cannot read %s: %s" % (role, path, e))
            continue
        exp = expected[role]
        ours_name, base_name = exp.get("agents", [WSCLOSE, BASELINE])
        for agent in (ours_name, base_name):
            results = index.get(agent, {})
            c = counts(results)
            table.append((role, agent, len(results), c))
            if len(results) < exp["min_cases"]:
                problems.append("%s/%s: only %d cases ran, expected at least %d"
                                % (role, agent, len(results), exp["min_cases"]))
        ours = index.get(ours_name, {})
        base = index.get(base_name, {})
        for case in sorted(ours, key=case_key):
            r = ours[case]
            want = exp["cases"].get(case, {})
            for field in ("behavior", "behaviorClose"):
                got, allowed = r[field], want.get(field, "OK")
                if rank(got) > rank(allowed):
                    problems.append("%s/%s case %s: %s %s, expected at most %s"
                                    % (role, ours_name, case, field, got, allowed))
                if case in base and rank(got) > rank(base[case][field]):
                    problems.append("%s/%s case %s: %s %s is worse than raw %s's %s"
                                    % (role, ours_name, case, field, got, base_name,
                                       base[case][field]))
        for case in sorted(base, key=case_key):
            want = exp["cases"].get(case, {})
            for field in ("behavior", "behaviorClose"):
                if rank(base[case][field]) > rank(want.get(field, "OK")):
                    print("note: baseline %s/%s case %s: %s %s (expected file says %s)"
                          % (role, base_name, case, field, base[case][field],
                             want.get(field, "OK")))

    print("%-23s %-24s %5s %5s %10s %13s %6s" % ("role", "agent", "cases", *COLUMNS))
    for role, agent, n, c in table:
        print("%-23s %-24s %5d %5d %10d %13d %6d"
              % (role, agent, n, c["OK"], c["NON-STRICT"], c["INFORMATIONAL"], c["FAILED"]))
    if problems:
        print("autobahn: %d problem(s):" % len(problems))
        for p in problems:
            print("  - " + p)
        return 1
    print("autobahn: every wsclose case is as good as expected and as the library used raw")
    return 0


if __name__ == "__main__":
    sys.exit(main())
