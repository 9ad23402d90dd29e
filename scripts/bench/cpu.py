"""CPU time, in milliseconds, used so far by a process tree.

    python3 scripts/bench/cpu.py PID            # the process alone
    python3 scripts/bench/cpu.py --cluster PID  # PID, its live children and the children it reaped

--cluster is for the PostgreSQL postmaster: its backends come and go, and
a backend's time moves into the postmaster's cutime/cstime when it exits,
so the sum covers every backend of the run.
"""
import os
import sys

tick = os.sysconf("SC_CLK_TCK")


def stat(pid):
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def own(pid):
    s = stat(pid)  # fields after the command; utime is field 14 overall, i.e. index 11 here
    return int(s[11]) + int(s[12])


cluster = sys.argv[1] == "--cluster"
pid = int(sys.argv[-1])
total = own(pid)
if cluster:
    s = stat(pid)
    total += int(s[13]) + int(s[14])  # cutime, cstime: reaped children
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                if int(stat(p)[1]) == pid:  # ppid
                    total += own(p)
            except (FileNotFoundError, ProcessLookupError):
                pass
print(total * 1000 / tick)
