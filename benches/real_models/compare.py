"""Runs the engine's real_models criterion bench and onnxruntime on the same models and inputs,
in one run, and prints a markdown table of the two, their ratio and the engine's accuracy.

Models are target/bench-models/<name>/ (or $BENCH_MODELS), written by make_models.py. Batch 1
is the fixture's first row and batch 16 the whole fixture, exactly as benches/real_models.rs
builds them; 1 and 2 threads (onnxruntime: intra_op_num_threads, one inter-op thread,
sequential execution, default ORT_ENABLE_ALL optimisations; the engine: its intra-op thread
count). Each figure is a median per call, with the bench's own timing budget (0.5 s warm-up,
2 s or at least 10 calls), so a slow model still finishes in reasonable time on 2 cores.

Side by side means per model: the engine runs one model's cases, then onnxruntime the same
cases, then the next model starts. The development VMs have slow phases of minutes in which
everything runs 10-50% slower; with the whole engine table first and the whole onnxruntime
table after, such a phase landed on one side of many ratios at once (three runs of one build
spanned 0.89x-1.12x in geomean). Interleaved, it lands on both sides of the same ratio.

The accuracy column is the bench's own check: max |ours - onnxruntime| / max |onnxruntime| on
the first output at that batch. A model the engine cannot load or run is listed under the table
with its error and keeps its onnxruntime row. The exit status is 1 when any check exceeds 1e-3.

Arguments are passed to criterion (e.g. a filter such as `light_resnet50` or `b16_t2`); a plain
text filter also selects the onnxruntime rows. The table goes to stdout, progress to stderr.

Usage: benches/real_models.sh [criterion args]  (sets up the venv and models, then runs this)
"""
import json
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

ROOT = Path(__file__).resolve().parents[2]
MODELS = Path(os.environ.get("BENCH_MODELS", ROOT / "target/bench-models"))
CRITERION = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "criterion/real"
BATCHES = (1, 16)
THREADS = (1, 2)
TOLERANCE = 1e-3
CHECK = re.compile(r"^real_models check (\S+) b(\d+): (.*)$")
SKIP = re.compile(r"^real_models skip (\S+): (.*)$")


def log(*args, **kwargs):
    print(*args, **kwargs, file=sys.stderr, flush=True)


def models():
    """(name, directory) of every generated model, in name order (as the bench sees them)."""
    for model in sorted(MODELS.glob("*/model.onnx")):
        if (model.parent / "input_b16.npy").is_file():
            yield model.parent.name, model.parent


def plain_filter(args):
    """The criterion filter when it is plain text (see plain_filter in real_models.rs)."""
    valued = {"--save-baseline", "-s", "--baseline", "-b", "--baseline-lenient", "--load-baseline",
              "--color", "-c", "--output-format", "--plotting-backend", "--profile-time",
              "--sample-size", "--warm-up-time", "--measurement-time", "--nresamples",
              "--noise-threshold", "--confidence-level", "--significance-level"}
    i = 0
    while i < len(args):
        if args[i] in valued:
            i += 2
            continue
        if not args[i].startswith("-"):
            return None if re.search(r"[\\.+*?()|\[\]{}^$]", args[i]) else args[i]
        i += 1
    return None


def cases(filter_text):
    """(name, dir, batch, threads) for every id the filter lets through."""
    for name, path in models():
        for batch in BATCHES:
            for threads in THREADS:
                if filter_text is None or filter_text in f"real/{name}/b{batch}_t{threads}":
                    yield name, path, batch, threads


def engine_run(args, name, path):
    """Runs the criterion bench on the one model `name` (echoing its output to stderr) and
    returns ({(name, batch, threads): seconds}, {(name, batch): check text}, {name: skip reason})."""
    started = time.time()
    checks, skips = {}, {}
    cmd = ["cargo", "bench", "--bench", "real_models", "--", *args]
    # the bench reads every model under $BENCH_MODELS: a directory holding this one alone
    with tempfile.TemporaryDirectory(prefix="real_models.") as one:
        os.symlink(path.resolve(), Path(one) / name)
        env = dict(os.environ, RAYON_NUM_THREADS=str(max(THREADS)), BENCH_MODELS=one)
        with subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True) as proc:
            for line in proc.stdout:
                log(line, end="")
                if m := CHECK.match(line.strip()):
                    checks[(m[1], int(m[2]))] = m[3]
                elif m := SKIP.match(line.strip()):
                    skips[m[1]] = m[2]
    if proc.returncode:
        sys.exit(f"cargo bench failed with status {proc.returncode}")
    times = {}
    for case, _, batch, threads in cases(plain_filter(args)):
        if case != name:
            continue
        est = CRITERION / name / f"b{batch}_t{threads}" / "new/estimates.json"
        # a model skipped this run may have estimates from an older one: ignore those
        if name not in skips and est.is_file() and est.stat().st_mtime >= started:
            times[(name, batch, threads)] = json.loads(est.read_text())["median"]["point_estimate"] / 1e9
    return times, checks, skips


def median_seconds(run, budget=2.0, warmup=0.5, min_samples=10):
    """Median of calls after a warm-up, over `budget` seconds or `min_samples` calls, whichever
    is longer: criterion's settings in real_models.rs."""
    end = time.perf_counter() + warmup
    while time.perf_counter() < end:
        run()
    samples = []
    end = time.perf_counter() + budget
    while time.perf_counter() < end or len(samples) < min_samples:
        start = time.perf_counter()
        run()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def onnxruntime_run(filter_text, only):
    """({(name, batch, threads): seconds}, {name: error}) for the model `only`, one session per
    thread count; a model onnxruntime cannot run is reported, not fatal, like on the engine's side."""
    out, errors = {}, {}
    session, loaded = None, None
    for name, path, batch, threads in sorted(cases(filter_text), key=lambda c: (c[0], c[3], c[2])):
        if name != only or name in errors:
            continue
        log(f"onnxruntime real/{name}/b{batch}_t{threads}")
        try:
            if loaded != (name, threads):
                session = None  # one big model in memory at a time
                opts = ort.SessionOptions()
                opts.intra_op_num_threads = threads
                opts.inter_op_num_threads = 1
                opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
                session = ort.InferenceSession(str(path / "model.onnx"), opts, providers=["CPUExecutionProvider"])
                loaded = (name, threads)
            x = np.load(path / "input_b16.npy")[:batch]
            feed = {session.get_inputs()[0].name: x}
            out[(name, batch, threads)] = median_seconds(lambda: session.run(None, feed))
        except Exception as e:  # noqa: BLE001 - any failure is reported per model
            log(f"onnxruntime {name}: {e}")
            errors[name] = str(e).splitlines()[0]
            session, loaded = None, None
    return out, errors


def fmt(seconds):
    if seconds is None:
        return "—"
    return f"{seconds * 1e6:.0f} µs" if seconds < 1e-3 else f"{seconds * 1e3:.2f} ms"


def accuracy(check):
    """The check line's relative error, or a short word when there is none."""
    if check is None:
        return "—", False
    m = re.search(r"rel=(\S+) (\w+)", check)
    if not m:
        return check, "MISMATCH" in check
    return f"{float(m[1]):.1e}", m[2] != "ok"


def cpu_model():
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown CPU"
    model, flags = "unknown CPU", set()
    for line in lscpu.splitlines():
        if line.startswith("Model name:"):
            model = line.split(":", 1)[1].strip()
        elif line.startswith("Flags:"):
            flags = set(line.split(":", 1)[1].split())
    # "AMD EPYC" names several generations; the vector width decides both sides' kernels
    widest = next((isa for isa in ("avx512f", "avx2") if isa in flags), "no AVX2")
    return f"{model} ({widest.upper() if widest.startswith('avx') else widest})"


def main():
    args = sys.argv[1:]
    filter_text = plain_filter(args)
    ours, checks, skips, theirs, ort_errors = {}, {}, {}, {}, {}
    for name, path in models():
        if not any(case == name for case, *_ in cases(filter_text)):
            continue
        for into, part in zip((ours, checks, skips), engine_run(args, name, path)):
            into.update(part)
        for into, part in zip((theirs, ort_errors), onnxruntime_run(filter_text, name)):
            into.update(part)
    print(f"{cpu_model()}, {os.cpu_count()} CPUs visible, onnxruntime {ort.__version__}")
    print()
    print("| model | batch | threads | onnxruntime | candle-serving | ratio (ort / ours) | max rel. diff vs ort |")
    print("|---|---|---|---|---|---|---|")
    ratios, bad = {}, []
    for name, _, batch, threads in cases(filter_text):
        key = (name, batch, threads)
        t, o = theirs.get(key), ours.get(key)
        ratio = "—"
        if o is not None and t is not None:
            ratio = f"{t / o:.2f}x"
            ratios.setdefault((batch, threads), []).append(t / o)
        acc, mismatch = accuracy(checks.get((name, batch)))
        if name in skips:
            acc = "skipped"
        if mismatch:
            bad.append(f"{name} b{batch}: {checks[(name, batch)]}")
            acc = f"**{acc} MISMATCH**"
        print(f"| {name} | {batch} | {threads} | {fmt(t)} | {fmt(o)} | {ratio} | {acc} |")
    print()
    print("ratio > 1: the engine is faster. Geometric mean of the ratio over the models both ran:")
    print()
    print("| batch | threads | models | geomean (ort / ours) |")
    print("|---|---|---|---|")
    for (batch, threads), values in sorted(ratios.items()):
        geo = math.exp(sum(math.log(v) for v in values) / len(values))
        print(f"| {batch} | {threads} | {len(values)} | {geo:.2f}x |")
    if skips:
        print()
        print("Not run by the engine:")
        print()
        for name, reason in sorted(skips.items()):
            print(f"- {name}: {reason}")
    if ort_errors:
        print()
        print("Not run by onnxruntime:")
        print()
        for name, reason in sorted(ort_errors.items()):
            print(f"- {name}: {reason}")
    if bad:
        print()
        print(f"Outputs differ from onnxruntime by more than {TOLERANCE:g} (relative):")
        print()
        for line in bad:
            print(f"- {line}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
