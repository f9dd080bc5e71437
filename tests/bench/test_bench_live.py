"""test_bench_live.py — moeserve-bench against a real tiny-model server
(one np1 `moeserve serve`, harness.py): a small run completes with exact
request and token counts, sane percentiles, a report block that parses back
field by field and agrees with the saved JSON; chat and Poisson-rate runs
complete too; scripts/bench.sh sweeps two concurrencies into a table and plots.

argv: harness paths (--moeserve ... --configs) and --bench build/moeserve-bench.
"""
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
sys.path.insert(0, HERE)
from harness import Checks, Env, Server, log  # noqa: E402
import bench_block  # noqa: E402

N, ISL, OSL, CONC = 6, 16, 8, 3


def bench_path():
    rest = Env.rest
    return rest[rest.index("--bench") + 1]


def run_bench(env, srv, model, *extra, timeout=120):
    cmd = [bench_path(), "--model", model, "--base-url", "http://127.0.0.1:%d" % srv.port, *extra]
    log("running:", " ".join(cmd))
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        log("bench stderr:", r.stderr[-2000:])
    return r


def check_counts_and_block(c, env, srv, model):
    out = tempfile.mkdtemp(dir=env.workdir, prefix="bench-")
    r = run_bench(env, srv, model, "--dataset-name", "random", "--random-input-len", str(ISL), "--random-output-len",
                  str(OSL), "--random-prefix-len", "0", "--random-ids", "--tokenize-on-client", "--num-prompts",
                  str(N), "--max-concurrency", str(CONC), "--ignore-eos", "--percentile-metrics", "ttft,tpot,itl,e2el",
                  "--metric-percentiles", "50,90,99", "--save-result", "--result-dir", out, "--result-filename",
                  "r.json", "--disable-tqdm")
    c.check(r.returncode == 0, "exit status %d" % r.returncode)
    fields, errors = bench_block.parse(r.stdout)
    want = bench_block.expected_labels(pcts=("50", "90", "99"))
    c.check(list(fields) == want, "block fields %s != %s" % (list(fields), want))
    c.check(fields["Successful requests"] == N and fields["Failed requests"] == 0 and not errors,
            "requests %s / errors %s" % (fields, errors))
    c.check(fields["Total input tokens"] == N * ISL, "input tokens %s != %d" % (fields["Total input tokens"], N * ISL))
    c.check(fields["Total generated tokens"] == N * OSL, "output tokens %s" % fields["Total generated tokens"])
    dur = fields["Benchmark duration (s)"]
    c.check(0 < dur < 60, "duration %s" % dur)
    for name in ("TTFT", "TPOT", "ITL", "E2EL"):
        mean, med, p50, p90, p99 = (fields["%s %s (ms)" % (k, name)] for k in ("Mean", "Median", "P50", "P90", "P99"))
        c.check(0 < med <= p90 <= p99 and med == p50, "%s percentiles not ordered: %s %s %s" % (name, med, p90, p99))
        c.check(0 < mean < 60000, "%s mean %s" % (name, mean))
    c.check(fields["Median TTFT (ms)"] < fields["Median E2EL (ms)"], "TTFT >= E2EL")
    c.check(fields["P99 E2EL (ms)"] <= dur * 1000 + 1, "a request outlived the benchmark")
    # E2EL = TTFT + (OSL-1) * TPOT for every request, so the means agree
    c.check(abs(fields["Mean E2EL (ms)"] - fields["Mean TTFT (ms)"] - (OSL - 1) * fields["Mean TPOT (ms)"]) < 0.1,
            "mean E2EL != mean TTFT + (OSL-1) mean TPOT")
    # the block prints the duration to 10 ms: on a sub-second run that alone is > 1 %, so allow for it
    c.check(abs(fields["Output token throughput (tok/s)"] - N * OSL / dur) / (N * OSL / dur) < 0.01 + 0.006 / dur,
            "output throughput != tokens / duration")

    with open(os.path.join(out, "r.json")) as f:
        js = json.load(f)
    for k in ("duration", "completed", "total_input_tokens", "total_output_tokens", "request_throughput",
              "output_throughput", "total_token_throughput", "input_lens", "output_lens", "ttfts", "itls",
              "generated_texts", "errors", "mean_ttft_ms", "median_ttft_ms", "std_ttft_ms", "p99_ttft_ms",
              "mean_tpot_ms", "p99_tpot_ms", "mean_itl_ms", "p99_itl_ms", "mean_e2el_ms", "p99_e2el_ms"):
        c.check(k in js, "result JSON lacks %s" % k)
    c.check(js["completed"] == N and js["total_input_tokens"] == N * ISL and js["total_output_tokens"] == N * OSL,
            "JSON counts")
    c.check(js["input_lens"] == [ISL] * N and js["output_lens"] == [OSL] * N, "JSON lens")
    c.check([len(x) for x in js["itls"]] == [OSL - 1] * N, "one ITL per token after the first: %s" %
            [len(x) for x in js["itls"]])
    c.check(all(t for t in js["generated_texts"]) and js["errors"] == [""] * N, "texts/errors")
    for k, label in (("median_ttft_ms", "Median TTFT (ms)"), ("p99_itl_ms", "P99 ITL (ms)"),
                     ("mean_e2el_ms", "Mean E2EL (ms)"), ("output_throughput", "Output token throughput (tok/s)")):
        c.check(abs(round(js[k], 2) - fields[label]) < 0.006, "%s: JSON %s vs block %s" % (k, js[k], fields[label]))
    # the median of the JSON's own ITLs is the block's
    itls = sorted(x for l in js["itls"] for x in l)
    n = len(itls)
    med = (itls[n // 2] if n % 2 else (itls[n // 2 - 1] + itls[n // 2]) / 2) * 1000
    c.check(abs(med - fields["Median ITL (ms)"]) < 0.006, "median ITL %s vs %s" % (med, fields["Median ITL (ms)"]))


def check_chat(c, env, srv, model):
    r = run_bench(env, srv, model, "--backend", "openai-chat", "--random-input-len", "12", "--random-output-len", "5",
                  "--num-prompts", "3", "--ignore-eos", "--disable-tqdm")
    c.check(r.returncode == 0, "exit status %d" % r.returncode)
    fields, _ = bench_block.parse(r.stdout)
    c.check(fields["Successful requests"] == 3 and fields["Total generated tokens"] == 15, "chat counts %s" % fields)
    # text prompts plus the chat template: the server's count, more than the ids
    c.check(fields["Total input tokens"] > 3 * 12 * 0.5, "chat input tokens %s" % fields["Total input tokens"])


def check_rate(c, env, srv, model):
    r = run_bench(env, srv, model, "--random-input-len", "8", "--random-output-len", "4", "--num-prompts", "5",
                  "--request-rate", "20", "--burstiness", "0.5", "--ignore-eos", "--tokenize-on-client",
                  "--random-range-ratio", "0.5", "--seed", "7")
    c.check(r.returncode == 0, "exit status %d" % r.returncode)
    fields, _ = bench_block.parse(r.stdout)
    c.check(fields["Successful requests"] == 5, "rate run %s" % fields)
    c.check(4 * 5 * 0.5 <= fields["Total input tokens"] + 0 and fields["Total input tokens"] <= 12 * 5,
            "range-ratio input tokens %s outside [4, 12] x 5" % fields["Total input tokens"])
    c.check("Traffic request rate: 20" in r.stdout and "Gamma distribution" in r.stdout, "traffic lines")
    c.check("Benchmarking:" in r.stderr, "no progress on stderr")


def check_sweep(c, env, srv, model):
    """scripts/bench.sh: the seed's loop, a table and a PNG/SVG plot."""
    out = tempfile.mkdtemp(dir=env.workdir, prefix="sweep-")
    root = os.path.join(HERE, "..", "..")
    envv = dict(os.environ, CONCURRENCY_LIST="1 3", MULTI_ROUND="1", ISL="8", OSL="4", RESULT_DIR=out, MODEL=model,
                GPUS="2", BENCH=bench_path())
    r = subprocess.run(["bash", os.path.join(root, "scripts", "bench.sh"), "--base-url",
                        "http://127.0.0.1:%d" % srv.port, "--disable-tqdm"], env=envv, capture_output=True, text=True,
                       timeout=120)
    c.check(r.returncode == 0, "bench.sh exit %d: %s" % (r.returncode, r.stderr[-1000:]))
    for f in ("concurrency_1.json", "concurrency_3.json", "sweep.md", "sweep.png", "sweep.svg"):
        c.check(os.path.getsize(os.path.join(out, f)) > 0 if os.path.exists(os.path.join(out, f)) else False,
                "bench.sh wrote no %s" % f)
    with open(os.path.join(out, "sweep.png"), "rb") as f:
        c.check(f.read(8) == b"\x89PNG\r\n\x1a\n", "sweep.png is not a PNG")
    rows = [l for l in open(os.path.join(out, "sweep.md")) if l.startswith("| 1 |") or l.startswith("| 3 |")]
    c.check(len(rows) == 2, "table rows %s" % rows)
    with open(os.path.join(out, "concurrency_3.json")) as f:
        js = json.load(f)
    cells = [x.strip() for x in rows[-1].split("|")[1:-1]] if rows else []
    c.check(js["completed"] == 3 and js["max_concurrency"] == 3 and js["total_output_tokens"] == 12, "sweep JSON")
    # per-GPU throughput is the block's output throughput over GPUS
    c.check(len(cells) == 10 and abs(float(cells[4]) * 2 - float(cells[3])) < 0.02, "per-GPU column %s" % cells)


def main():
    env = Env.from_args()
    model = env.tiny_model()
    c = Checks()
    with Server(env, model, np=1) as srv:
        c.run("counts_block_json", check_counts_and_block, env, srv, model)
        c.run("chat", check_chat, env, srv, model)
        c.run("poisson_rate", check_rate, env, srv, model)
        c.run("bench_sh_sweep", check_sweep, env, srv, model)
    c.done()


if __name__ == "__main__":
    main()
