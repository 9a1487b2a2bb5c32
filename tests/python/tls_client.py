"""TLS checks with the official TF Serving client: grpc.ssl_channel_credentials + tf.make_tensor_proto.

Why: a TF Serving user turns on TLS with --ssl_config_file and connects with
grpc.ssl_channel_credentials; that exact client must get golden answers, a client
without a valid certificate must be refused under client_verify, and a rotated
certificate must be picked up without a failed request.

Modes (all take --target HOST:PORT --ca CA.pem):
  serve    --fixtures DIR [--cert C --key K]   Predict at batch 1 and 16 matches the goldens;
                                               a plaintext channel is refused.
  refused  [--cert C --key K]                  Predict fails with UNAVAILABLE (handshake refused).
  rotate   --fixtures DIR --swap SRC=DST ...   Predicts keep running on one channel while each
           --rest HOST:PORT                    SRC file is moved over DST; both ports must then
                                               present the new certificate (--new-cert), with
                                               0 failed requests throughout.
Prints one line per check, then `N passed, M failed`; exits non-zero on failure.
"""
import argparse
import os
import shutil
import ssl
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import grpc  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from checks import Checks, expect  # noqa: E402
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc  # noqa: E402

MODEL, INPUT, OUTPUT, ATOL = "mnist_cnn", "image", "probabilities", 1e-5


def credentials(args):
    ca = Path(args.ca).read_bytes()
    if args.cert:
        return grpc.ssl_channel_credentials(ca, Path(args.key).read_bytes(), Path(args.cert).read_bytes())
    return grpc.ssl_channel_credentials(ca)


def stub(channel):
    return prediction_service_pb2_grpc.PredictionServiceStub(channel)


def predict(s, x, timeout=10.0):
    req = predict_pb2.PredictRequest()
    req.model_spec.name = MODEL
    req.inputs[INPUT].CopyFrom(tf.make_tensor_proto(x))
    return s.Predict(req, timeout=timeout)


def check_golden(s, fixtures, batch):
    x, want = np.load(fixtures / f"input_b{batch}.npy"), np.load(fixtures / f"output_b{batch}.npy")
    got = tf.make_ndarray(predict(s, x).outputs[OUTPUT])
    expect(got.shape == want.shape, f"shape {got.shape}, want {want.shape}")
    diff = float(np.max(np.abs(got - want)))
    expect(diff <= ATOL, f"max abs diff {diff:.3g} > {ATOL}")
    return f"max abs diff {diff:.3g}"


def check_refused(channel, what):
    try:
        predict(stub(channel), np.zeros((1, 28, 28, 1), np.float32), timeout=5.0)
    except grpc.RpcError as e:
        expect(e.code() == grpc.StatusCode.UNAVAILABLE, f"{what}: got {e.code()}, want UNAVAILABLE")
        return f"{e.code().name}"
    raise AssertionError(f"{what}: the request was served")


def server_cert_der(hostport):
    host, port = hostport.rsplit(":", 1)
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with ctx.wrap_socket(__import__("socket").create_connection((host, int(port)), timeout=5)) as sock:
        return sock.getpeercert(binary_form=True)


def pem_der(path):
    return ssl.PEM_cert_to_DER_cert(Path(path).read_text())


def mode_serve(args, checks):
    channel = grpc.secure_channel(args.target, credentials(args))
    s = stub(channel)
    for batch in (1, 16):
        checks.run(f"TLS Predict batch {batch} matches the goldens", lambda b=batch: check_golden(s, args.fixtures, b))
    checks.run("a plaintext channel is refused", lambda: check_refused(grpc.insecure_channel(args.target), "plaintext"))


def mode_refused(args, checks):
    what = "with a certificate the CA did not sign" if args.cert else "without a client certificate"
    checks.run(f"a client {what} is refused", lambda: check_refused(grpc.secure_channel(args.target, credentials(args)), what))


def mode_rotate(args, checks):
    channel = grpc.secure_channel(args.target, credentials(args))
    s = stub(channel)
    x = np.load(args.fixtures / "input_b1.npy")
    check_golden(s, args.fixtures, 1)
    stop = threading.Event()
    counts = {"ok": 0, "failed": 0, "errors": []}

    def load():
        while not stop.is_set():
            try:
                predict(s, x)
                counts["ok"] += 1
            except grpc.RpcError as e:
                counts["failed"] += 1
                counts["errors"].append(f"{e.code()}: {e.details()}")

    worker = threading.Thread(target=load)
    worker.start()
    time.sleep(0.5)
    for pair in args.swap:
        src, dst = pair.split("=", 1)
        shutil.copyfile(src, dst + ".tmp")
        os.replace(dst + ".tmp", dst)  # atomic, as a Secret volume update is
    new = pem_der(args.new_cert)

    def picked_up(hostport):
        deadline = time.time() + 20
        while time.time() < deadline:
            if server_cert_der(hostport) == new:
                return "new connections get the rotated certificate"
            time.sleep(0.2)
        raise AssertionError(f"{hostport} still presents the old certificate after 20 s")

    checks.run("gRPC port picks up the rotated certificate", lambda: picked_up(args.target))
    if args.rest:
        checks.run("REST port picks up the rotated certificate", lambda: picked_up(args.rest))
    time.sleep(0.5)
    stop.set()
    worker.join()
    checks.run("no request failed during rotation",
               lambda: (expect(counts["failed"] == 0 and counts["ok"] > 20, f"{counts['ok']} ok, {counts['failed']} failed: {counts['errors'][:3]}"),
                        f"{counts['ok']} requests on the old connection")[1])
    fresh = stub(grpc.secure_channel(args.target, credentials(args)))
    checks.run("a new channel verifies the rotated certificate and gets golden answers",
               lambda: check_golden(fresh, args.fixtures, 16))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["serve", "refused", "rotate"])
    ap.add_argument("--target", required=True)
    ap.add_argument("--ca", required=True)
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--fixtures", type=Path)
    ap.add_argument("--swap", action="append", default=[])
    ap.add_argument("--new-cert")
    ap.add_argument("--rest")
    args = ap.parse_args()
    checks = Checks()
    {"serve": mode_serve, "refused": mode_refused, "rotate": mode_rotate}[args.mode](args, checks)
    return checks.summary()


if __name__ == "__main__":
    sys.exit(main())
