"""bench_block.py — read moeserve-bench's "Serving Benchmark Result" block
back, field by field (standard library only; shared by the bench tests).

parse(text) -> (fields, errors): fields maps each label ("Successful
requests", "Mean TTFT (ms)", ...) to its number, in the order printed;
errors maps each "Error type: X, Count: N requests" reason to N.
"""
import re

# The seed's block (reference/trtllm-deepseek-r1-quickstart.md), in order,
# plus "Failed requests" after "Successful requests".
HEAD = ["Successful requests", "Failed requests", "Benchmark duration (s)", "Total input tokens",
        "Total generated tokens", "Request throughput (req/s)", "Output token throughput (tok/s)",
        "Total Token throughput (tok/s)", "User throughput (tok/s)"]
SECTIONS = [("TTFT", "Time to First Token"), ("TPOT", "Time per Output Token (excl. 1st token)"),
            ("ITL", "Inter-token Latency"), ("E2EL", "End-to-end Latency")]


def expected_labels(metrics=("TTFT", "TPOT", "ITL", "E2EL"), pcts=("99",)):
    out = list(HEAD)
    for name, _ in SECTIONS:
        if name in metrics:
            out += ["Mean %s (ms)" % name, "Median %s (ms)" % name] + ["P%s %s (ms)" % (p, name) for p in pcts]
    return out


def parse(text):
    lines = text.splitlines()
    try:
        start = next(i for i, l in enumerate(lines) if l == "{:=^50}".format(" Serving Benchmark Result "))
    except StopIteration:
        raise AssertionError("no 'Serving Benchmark Result' header in:\n" + text[-2000:])
    fields, errors = {}, {}
    for l in lines[:start]:
        m = re.match(r"Error type: (.*), Count: (\d+) requests$", l)
        if m:
            errors[m.group(1)] = int(m.group(2))
    end = None
    for i in range(start + 1, len(lines)):
        l = lines[i]
        if l == "=" * 50:
            end = i
            break
        if l.startswith("-"):
            title = l.strip("-")
            assert len(l) == 50 and l == "{:-^50}".format(title), "bad section header %r" % l
            continue
        # Python's "{:<40} {:<10.2f}": the label padded to 40, a space, the value padded to 10
        m = re.match(r"(.{40}) (\S+) *$", l)
        assert m and len(l) >= 51, "bad field line %r" % l
        label = m.group(1).rstrip()
        assert label.endswith(":"), "label without ':' %r" % l
        fields[label[:-1]] = float(m.group(2))
    assert end is not None, "block not closed by 50 '='"
    return fields, errors
