"""Memory after load: starts the release server on each model alone and reads its resident set
(VmRSS) and high-water mark (VmHWM) from /proc once the model is AVAILABLE, against the
budget of 1.5x the model's weights plus 30 MiB (prepacked copies must replace the originals,
not sit beside them).

The weights are the sum of the initializers' sizes as stored (onnx's numpy view). The models
are target/bench-models/* (make_models.py) and the ONNX models in models/. Prints a markdown
table on stdout; the exit status is 1 when any model is over budget on VmHWM.

Usage: target/bench-venv/bin/python benches/real_models/load_rss.py [name filter]
  (needs `cargo build --release --bin candle-serving` first)
"""
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import onnx
from onnx import numpy_helper

ROOT = Path(__file__).resolve().parents[2]
SERVER = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release/candle-serving"
MIB = 1 << 20


def models():
    for model in sorted((ROOT / "target/bench-models").glob("*/model.onnx")):
        yield model.parent.name, model
    for model in sorted((ROOT / "models").glob("*/1/model.onnx")):
        yield model.parents[1].name, model


def weight_bytes(path):
    graph = onnx.load(str(path)).graph
    return sum(numpy_helper.to_array(t).nbytes for t in graph.initializer)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def status_kib(pid):
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0])
    return fields


def measure(name, model):
    # a hard link: the server refuses symlinks that leave the base path
    with tempfile.TemporaryDirectory(dir=ROOT / "target") as base:
        version = Path(base) / name / "1"
        version.mkdir(parents=True)
        os.link(model, version / "model.onnx")
        grpc, rest = free_port(), free_port()
        server = subprocess.Popen(
            [str(SERVER), f"--port={grpc}", f"--rest_api_port={rest}", f"--model_name={name}",
             f"--model_base_path={Path(base) / name}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.time() + 300
            while time.time() < deadline:
                if server.poll() is not None:
                    raise RuntimeError(f"server exited: {server.stderr.read().strip().splitlines()[-1:]}")
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{rest}/v1/models/{name}", timeout=2) as r:
                        states = [v["state"] for v in json.load(r)["model_version_status"]]
                    if "AVAILABLE" in states:
                        return status_kib(server.pid)
                except OSError:
                    pass
                time.sleep(0.2)
            raise RuntimeError("not AVAILABLE within 300 s")
        finally:
            server.terminate()
            server.wait(timeout=30)


def main():
    if not SERVER.is_file():
        sys.exit(f"{SERVER} is missing: run `cargo build --release --bin candle-serving`")
    wanted = sys.argv[1] if len(sys.argv) > 1 else ""
    cpu = next((l.split(":", 1)[1].strip() for l in subprocess.run(
        ["lscpu"], capture_output=True, text=True).stdout.splitlines() if l.startswith("Model name")), "?")
    print(f"Memory after load ({cpu}); budget = 1.5 x weights + 30 MiB\n")
    print("| model | weights MiB | VmRSS MiB | VmHWM MiB | budget MiB | HWM / budget |")
    print("|---|---|---|---|---|---|")
    over = 0
    for name, path in models():
        if wanted not in name:
            continue
        weights = weight_bytes(path)
        budget = 1.5 * weights + 30 * MIB
        try:
            kib = measure(name, path)
        except Exception as e:  # one model failing to load is reported, the rest still run
            print(f"| {name} | {weights / MIB:.1f} | failed: {e} | | | |", flush=True)
            over += 1
            continue
        rss, hwm = kib["VmRSS"] * 1024, kib["VmHWM"] * 1024
        over += hwm > budget
        print(f"| {name} | {weights / MIB:.1f} | {rss / MIB:.1f} | {hwm / MIB:.1f} | {budget / MIB:.1f} "
              f"| {hwm / budget:.2f}{' **over**' if hwm > budget else ''} |", flush=True)
    sys.exit(1 if over else 0)


if __name__ == "__main__":
    main()
