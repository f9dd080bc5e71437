#!/usr/bin/env python3
"""ncu_kernels.py — kernel times of an `ncu --csv --metrics gpu__time_duration.sum` capture, summed by kernel name.

    python3 tools/ncu_kernels.py CAPTURE.csv [TOP]     (TOP: how many kernels to list, default 25)

Prints "kernels N, sum S us" and then the TOP kernels by total time (total, calls, per call, name without its
argument list). scripts/gpu-check.sh's graphs and step phases capture one replayed decode step with
`MS_BENCH_PROFILE_STEP=1 ncu --profile-from-start off --graph-profiling node` and summarize it here."""
import collections
import csv
import sys

UNIT_US = {"ns": 1e-3, "nsecond": 1e-3, "us": 1.0, "usecond": 1.0, "ms": 1e3, "msecond": 1e3}


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    rows = list(csv.reader(open(sys.argv[1], newline="")))
    head = [i for i, r in enumerate(rows) if "Metric Value" in r and "Kernel Name" in r]
    if not head:
        print("no ncu rows")
        return
    h = rows[head[0]]
    iv, iu, ik = h.index("Metric Value"), h.index("Metric Unit"), h.index("Kernel Name")
    agg = collections.defaultdict(lambda: [0, 0.0])
    for r in rows[head[0] + 1:]:
        if len(r) != len(h) or r[iu] not in UNIT_US:
            continue
        a = agg[r[ik].split("(")[0][:70]]
        a[0] += 1
        a[1] += float(r[iv].replace(",", "")) * UNIT_US[r[iu]]
    print("kernels %d, sum %.1f us" % (sum(a[0] for a in agg.values()), sum(a[1] for a in agg.values())))
    top = int(sys.argv[2]) if len(sys.argv) > 2 else 25
    for name, (n, t) in sorted(agg.items(), key=lambda x: -x[1][1])[:top]:
        print("%8.1f us %4d  %7.1f us/call  %s" % (t, n, t / n, name))


if __name__ == "__main__":
    main()
