"""Medians of the benchmark scripts' JSON lines, as a Markdown table.

    python3 scripts/bench/summary.py RESULTS.jsonl

One row per (scenario, concurrency) in the order first seen; the server
CPU column appears when the runs measured it.
"""
import collections
import json
import statistics
import sys

rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
groups = collections.OrderedDict()
for r in rows:
    groups.setdefault((r["scenario"], r["concurrency"]), []).append(r)
cpu = any("server_cpu_ms_per_grant" in r for r in rows)
head = ["scenario", "concurrency", "per second (median)", "p50 ms", "p99 ms"] + (["server CPU ms/request"] if cpu else []) + ["peak RSS MB", "errors"]
print("\n| " + " | ".join(head) + " |")
print("|" + " --- |" * len(head))
for (scenario, conc), rs in groups.items():
    med = lambda k: statistics.median(r.get(k, 0) for r in rs)
    cells = [scenario, str(conc), f"{med('per_second'):.0f}", f"{med('p50_ms'):.2f}", f"{med('p99_ms'):.2f}"]
    if cpu:
        cells.append(f"{med('server_cpu_ms_per_grant'):.3f}")
    cells += [f"{med('peak_rss_mb'):.0f}", str(sum(r.get("errors", 0) for r in rs))]
    print("| " + " | ".join(cells) + " |")
