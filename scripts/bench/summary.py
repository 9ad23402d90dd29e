"""Medians of the benchmark scripts' JSON lines, as Markdown tables.

    python3 scripts/bench/summary.py RESULTS.jsonl

One row per (scenario, concurrency) in the order first seen; CPU columns
appear when the runs measured them. Then ratios taken run by run (the
k-th run of one scenario against the k-th run of its reference, which ran
beside it), as medians: opaque grants against pgbench of their INSERT,
JWT against opaque grants, sign-ins against argon2id alone.
"""
import collections
import json
import statistics
import sys

rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
for r in rows:  # older scripts' name for the same figure
    if "server_cpu_ms_per_grant" in r:
        r.setdefault("server_cpu_ms_per_request", r.pop("server_cpu_ms_per_grant"))
groups = collections.OrderedDict()
for r in rows:
    groups.setdefault((r["scenario"], r["concurrency"]), []).append(r)
cols = [k for k in ("server_cpu_ms_per_request", "pg_cpu_ms_per_request") if any(k in r for r in rows)]
names = {"server_cpu_ms_per_request": "server CPU ms/request", "pg_cpu_ms_per_request": "PostgreSQL CPU ms/request"}
head = ["scenario", "concurrency", "per second (median)", "p50 ms", "p99 ms"] + [names[c] for c in cols] + ["peak RSS MB", "errors"]
print("\n| " + " | ".join(head) + " |")
print("|" + " --- |" * len(head))
for (scenario, conc), rs in groups.items():
    def med(k, rs=rs):
        vals = [r[k] for r in rs if k in r]
        return statistics.median(vals) if vals else None
    cells = [scenario, str(conc), f"{med('per_second'):.0f}", f"{med('p50_ms'):.2f}", f"{med('p99_ms'):.2f}"]
    for c in cols:
        v = med(c)
        cells.append("–" if v is None else f"{v:.3f}")
    rss = med("peak_rss_mb")
    cells += ["–" if rss is None else f"{rss:.0f}", str(sum(r.get("errors", 0) for r in rs))]
    print("| " + " | ".join(cells) + " |")

# (scenario, reference, label, +1: the reference runs right after, -1: before)
pairs = [("client_credentials_opaque", "pgbench_token_insert", "opaque grants / pgbench of their INSERT", 1),
         ("client_credentials_jwt", "client_credentials_opaque", "JWT grants / opaque grants", -1),
         ("authcode", "argon2", "full sign-ins / argon2id alone (1 at a time)", 1)]
lines = []
for a, b, label, side in pairs:
    for (scenario, conc), rs in groups.items():
        if scenario != a:
            continue
        ratios = []
        for x in rs:
            # The reference run taken beside this one: the nearest row of b
            # on its side in the file (argon2id alone runs at 1 after every
            # sign-in row).
            i = rows.index(x)
            near = [(abs(j - i), y) for j, y in enumerate(rows) if (j - i) * side > 0
                    and y["scenario"] == b and (y["concurrency"] == conc or b == "argon2") and y["per_second"]]
            if near:
                ratios.append(x["per_second"] / min(near, key=lambda t: t[0])[1]["per_second"])
        if ratios:
            lines.append(f"| {label} | {conc} | {statistics.median(ratios):.0%} | {', '.join(f'{r:.2f}' for r in ratios)} |")
if lines:
    print("\n| ratio | concurrency | median | runs |\n| --- | --- | --- | --- |")
    print("\n".join(lines))
