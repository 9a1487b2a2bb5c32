"""Interop test: talk to candle-serving with the official TF Serving client API.

Why: the server claims TensorFlow Serving gRPC compatibility, so it is checked
with the same Python client code (tensorflow_serving.apis + tf.make_tensor_proto
/ tf.make_ndarray) that real TF Serving users run, against golden outputs made
by onnxruntime (models/make_goldens.py).

Usage:
  python tests/python/interop.py --target 127.0.0.1:PORT --model mnist_cnn \
      --fixtures tests/fixtures/mnist_cnn
Prints one line per check, then `N passed, M failed`; exits non-zero on failure.
"""
import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TF's import chatter quiet

import grpc  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from checks import Checks, expect  # noqa: E402
from tensorflow_serving.apis import (  # noqa: E402
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

INPUT, OUTPUT, SIGNATURE, VERSION = "image", "probabilities", "serving_default", 1
ATOL = 1e-5
ERROR_CODE_OK = 0  # tensorflow.error.Code.OK


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target", required=True, help="host:port of the gRPC endpoint")
    ap.add_argument("--model", required=True)
    ap.add_argument("--fixtures", required=True, type=Path, help="folder with input/output_b{1,16}.npy")
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds per RPC")
    args = ap.parse_args()

    gold = {b: (np.load(args.fixtures / f"input_b{b}.npy"), np.load(args.fixtures / f"output_b{b}.npy"))
            for b in (1, 16)}
    in_shape = [-1] + list(gold[1][0].shape[1:])
    out_shape = [-1] + list(gold[1][1].shape[1:])

    checks = Checks()
    channel = grpc.insecure_channel(args.target)
    try:
        grpc.channel_ready_future(channel).result(timeout=args.timeout)
    except grpc.FutureTimeoutError:
        checks.run(f"connect to {args.target}",
                   lambda: expect(False, f"could not connect within {args.timeout:g}s"))
        print(f"{checks.passed} passed, {checks.failed} failed")
        return 1
    predict_stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    model_stub = model_service_pb2_grpc.ModelServiceStub(channel)

    def predict(x, model=args.model, input_name=INPUT, version=None, signature=None):
        req = predict_pb2.PredictRequest()
        req.model_spec.name = model
        if version is not None:
            req.model_spec.version.value = version
        if signature is not None:
            req.model_spec.signature_name = signature
        req.inputs[input_name].CopyFrom(tf.make_tensor_proto(x))
        return predict_stub.Predict(req, timeout=args.timeout)

    def check_predict(batch, **spec):
        x, want = gold[batch]
        resp = predict(x, **spec)
        ms = resp.model_spec
        expect(ms.name == args.model, f"model_spec.name={ms.name!r}")
        expect(ms.signature_name == SIGNATURE, f"model_spec.signature_name={ms.signature_name!r}")
        expect(ms.version.value == VERSION, f"model_spec.version={ms.version.value}")
        expect(OUTPUT in resp.outputs, f"outputs={list(resp.outputs)}")
        got = tf.make_ndarray(resp.outputs[OUTPUT])
        expect(got.dtype == np.float32 and got.shape == want.shape, f"got {got.dtype} {got.shape}")
        diff = float(np.max(np.abs(got - want)))
        expect(diff <= ATOL, f"max abs diff {diff:.3g} > {ATOL}")
        return f"max abs diff {diff:.3g}"

    def check_metadata():
        req = get_model_metadata_pb2.GetModelMetadataRequest()
        req.model_spec.name = args.model
        req.metadata_field.append("signature_def")
        resp = predict_stub.GetModelMetadata(req, timeout=args.timeout)
        expect(resp.model_spec.name == args.model, f"model_spec.name={resp.model_spec.name!r}")
        expect(resp.model_spec.version.value == VERSION, f"model_spec.version={resp.model_spec.version.value}")
        sig_map = get_model_metadata_pb2.SignatureDefMap()
        expect(resp.metadata["signature_def"].Unpack(sig_map), "metadata['signature_def'] is not a SignatureDefMap")
        expect(SIGNATURE in sig_map.signature_def, f"signatures={list(sig_map.signature_def)}")
        sig = sig_map.signature_def[SIGNATURE]
        for kind, infos, name, shape in (("input", sig.inputs, INPUT, in_shape),
                                         ("output", sig.outputs, OUTPUT, out_shape)):
            expect(list(infos) == [name], f"{kind}s={list(infos)}")
            info = infos[name]
            expect(info.dtype == tf.float32.as_datatype_enum, f"{kind} {name} dtype={info.dtype}")
            dims = [d.size for d in info.tensor_shape.dim]
            expect(dims == shape, f"{kind} {name} shape={dims}, want {shape}")
        return f"{INPUT} {in_shape} -> {OUTPUT} {out_shape}"

    def check_status():
        req = get_model_status_pb2.GetModelStatusRequest()
        req.model_spec.name = args.model
        resp = model_stub.GetModelStatus(req, timeout=args.timeout)
        versions = {v.version: v for v in resp.model_version_status}
        expect(VERSION in versions, f"versions={list(versions)}")
        v = versions[VERSION]
        expect(v.state == get_model_status_pb2.ModelVersionStatus.AVAILABLE,
               f"state={get_model_status_pb2.ModelVersionStatus.State.Name(v.state)}")
        expect(v.status.error_code == ERROR_CODE_OK, f"error_code={v.status.error_code}")
        return f"versions {sorted(versions)}"

    def check_error(code, needle=None, **kw):
        try:
            predict(gold[1][0], **kw)
        except grpc.RpcError as e:
            expect(e.code() == code, f"got {e.code()}: {e.details()}")
            expect(needle is None or needle in (e.details() or ""), f"details={e.details()!r}")
            return f"{e.code().name}: {e.details()}"
        raise AssertionError(f"expected {code.name}, got a successful response")

    checks.run("predict b1 (default version/signature)", lambda: check_predict(1))
    checks.run("predict b16 (default version/signature)", lambda: check_predict(16))
    checks.run("predict b1 (version 1, serving_default)", lambda: check_predict(1, version=1, signature=SIGNATURE))
    checks.run("predict b16 (version 1, serving_default)", lambda: check_predict(16, version=1, signature=SIGNATURE))
    checks.run("get model metadata (signature_def)", check_metadata)
    checks.run("get model status", check_status)
    checks.run("unknown model -> NOT_FOUND", lambda: check_error(
        grpc.StatusCode.NOT_FOUND, "Servable not found for request: Latest(nope)", model="nope"))
    checks.run("wrong input name -> INVALID_ARGUMENT", lambda: check_error(
        grpc.StatusCode.INVALID_ARGUMENT, input_name="not_an_input"))
    checks.run("predict b1 still works after errors", lambda: check_predict(1))
    checks.run("predict b16 still works after errors", lambda: check_predict(16))

    channel.close()
    print(f"{checks.passed} passed, {checks.failed} failed")
    return 0 if checks.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
