"""Runs onnxruntime and the engine's criterion bench on the same models and inputs, in one
run, and prints the ratio table the README quotes.

For every models/<name>/1/model.onnx with tests/fixtures/<name>/input_b16.npy: batch 1 and 64
(rows cycled from the fixture, exactly as benches/engine.rs builds them), 1 and 2 threads
(onnxruntime: intra_op_num_threads, sequential execution, one inter-op thread; the engine:
its intra-op thread count). Each figure is a median per call.

Usage: benches/engine_vs_onnxruntime.sh  (sets up the venv, then runs this)
"""
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

ROOT = Path(__file__).resolve().parent.parent
BATCHES = (1, 64)
THREADS = (1, 2)


def models():
    for model in sorted((ROOT / "models").glob("*/1/model.onnx")):
        name = model.parent.parent.name
        fixture = ROOT / "tests/fixtures" / name / "input_b16.npy"
        if fixture.is_file():
            yield name, model, fixture


def batch_input(fixture, batch):
    rows = np.load(fixture).astype(np.float32)
    return np.stack([rows[i % len(rows)] for i in range(batch)])


def median_seconds(run, budget=3.0, warmup=0.8):
    end = time.perf_counter() + warmup
    while time.perf_counter() < end:
        run()
    samples = []
    end = time.perf_counter() + budget
    while time.perf_counter() < end or len(samples) < 20:
        start = time.perf_counter()
        run()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def onnxruntime_medians():
    out = {}
    for name, model, fixture in models():
        for threads in THREADS:
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
            opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            session = ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])
            feed_name = session.get_inputs()[0].name
            for batch in BATCHES:
                feed = {feed_name: batch_input(fixture, batch)}
                out[(name, batch, threads)] = median_seconds(lambda: session.run(None, feed))
    return out


def engine_medians():
    env = dict(os.environ, RAYON_NUM_THREADS=str(max(THREADS)))
    subprocess.run(["cargo", "bench", "--bench", "engine"], cwd=ROOT, env=env, check=True)
    out = {}
    for name, _, _ in models():
        for batch in BATCHES:
            for threads in THREADS:
                est = ROOT / "target/criterion/engine" / name / f"b{batch}_t{threads}" / "new/estimates.json"
                out[(name, batch, threads)] = json.loads(est.read_text())["median"]["point_estimate"] / 1e9
    return out


def fmt(seconds):
    return f"{seconds * 1e6:.0f} µs" if seconds < 1e-3 else f"{seconds * 1e3:.2f} ms"


def main():
    ours = engine_medians()
    theirs = onnxruntime_medians()
    print(f"onnxruntime {ort.__version__}, {os.cpu_count()} CPUs visible")
    print()
    print("| model | batch | threads | onnxruntime | candle-serving | latency ratio (ours / ort) | throughput ratio (ours / ort) |")
    print("|---|---|---|---|---|---|---|")
    for key in sorted(ours):
        name, batch, threads = key
        o, t = ours[key], theirs[key]
        print(f"| {name} | {batch} | {threads} | {fmt(t)} | {fmt(o)} | {o / t:.2f}x | {t / o:.2f}x |")


if __name__ == "__main__":
    sys.exit(main())
