"""KServe v2 / Open Inference Protocol interop: the `kserve` Python SDK's own v2 clients against
candle-serving.

Why: KServe users who script against an InferenceService use the SDK's clients,
kserve.InferenceRESTClient (httpx, REST `/v2`) and kserve.InferenceGRPCClient (grpc.aio,
inference.GRPCInferenceService), with kserve.InferRequest / InferInput; both are asyncio-only.
They encode requests differently from tritonclient (tests/python/kserve_v2.py): REST binary
inputs go with an `Inference-Header-Content-Length` header and `application/octet-stream`, a
random request id is always set, and errors are surfaced from the `{"error": ...}` body only
when the Content-Type is exactly `application/json`. Outputs are compared with onnxruntime's
goldens (models/make_goldens.py).

The SDK has no model metadata call on either client, so metadata is read with the SDK's own
generated gRPC stub (kserve.protocol.grpc) and with httpx, the HTTP library its REST client uses.

Usage:
  python tests/python/kserve_sdk_v2.py --grpc 127.0.0.1:PORT --http 127.0.0.1:PORT \
      --models mnist_cnn,mnist_gru,mnist_lstm --fixtures tests/fixtures
Every model must be ready; metadata and inference are checked on mnist_cnn, which must be one
of them. Prints one line per check, then `N passed, M failed`; exits non-zero on failure.
"""
import argparse
import asyncio
import logging
import sys
from pathlib import Path

import grpc
import httpx
import numpy as np
from checks import Checks, close_to, expect

# `import kserve` parses sys.argv with the SDK's model-server flags (kserve/model_server.py calls
# parse_known_args at import time), and argparse takes --grpc and --http for abbreviations of its
# --grpc_port and --http_port: the script's own arguments are hidden from it while it imports.
_argv, sys.argv = sys.argv, sys.argv[:1]
try:
    from kserve import InferenceGRPCClient, InferenceRESTClient, InferInput, InferRequest, RESTConfig
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
    from kserve.protocol.grpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub
    from kserve.protocol.infer_type import RequestedOutput
finally:
    sys.argv = _argv

MODEL, INPUT, OUTPUT, VERSION, PLATFORM = "mnist_cnn", "image", "probabilities", "1", "onnx_onnxv1"
IN_SHAPE, OUT_SHAPE = [-1, 28, 28, 1], [-1, 10]
UNKNOWN = "no_such_model"
TIMEOUT = 30.0  # seconds per call

# The SDK's gRPC client logs every failed call with its traceback on the "kserve.trace" logger
# before re-raising; the expected errors below would fill stderr with them.
logging.getLogger("kserve.trace").setLevel(logging.CRITICAL)


class Clients:
    """The SDK clients of one server (created inside the event loop that runs every check) and
    the goldens of MODEL."""

    def __init__(self, args):
        self.args = args
        self.base_url = f"http://{args.http}"
        self.rest = InferenceRESTClient(RESTConfig(protocol="v2", timeout=TIMEOUT))
        # retries=0: an UNAVAILABLE must show, not be retried away.
        self.grpc = InferenceGRPCClient(args.grpc, timeout=TIMEOUT, retries=0)
        self.channel = grpc.aio.insecure_channel(args.grpc)
        self.stub = GRPCInferenceServiceStub(self.channel)
        self.httpx = httpx.AsyncClient(base_url=self.base_url, timeout=TIMEOUT)
        self.gold = {b: (np.load(args.fixtures / MODEL / f"input_b{b}.npy"), np.load(args.fixtures / MODEL / f"output_b{b}.npy"))
                     for b in (1, 16)}

    def request(self, batch, binary, rid, model=MODEL, binary_output=None):
        """An InferRequest for the golden input of `batch`: binary (raw_input_contents over gRPC,
        binary tensor data after the JSON over REST) or not (typed fp32_contents / JSON data)."""
        x, _ = self.gold[batch]
        inp = InferInput(INPUT, list(x.shape), "FP32")
        inp.set_data_from_numpy(x, binary_data=binary)
        outputs = None
        if binary_output is not None:
            outputs = [RequestedOutput(OUTPUT, parameters={"binary_data": binary_output})]
        return InferRequest(model, [inp], request_id=rid, request_outputs=outputs)

    async def close(self):
        await self.rest.close()
        await self.grpc.close()
        await self.channel.close()
        await self.httpx.aclose()


def check_response(resp, rid, want, grpc_version):
    """An InferResponse: the request's id, the model, one FP32 output matching the golden."""
    expect(resp.id == rid, f"id={resp.id!r}, want {rid!r}")
    expect(resp.model_name == MODEL, f"model_name={resp.model_name!r}")
    if grpc_version:  # InferResponse.from_bytes (REST) drops model_version
        expect(resp.model_version == VERSION, f"model_version={resp.model_version!r}")
    expect([o.name for o in resp.outputs] == [OUTPUT], f"outputs={[o.name for o in resp.outputs]}")
    out = resp.outputs[0]
    expect(out.datatype == "FP32" and list(out.shape) == list(want.shape), f"output {out.datatype} {list(out.shape)}")
    return f"max abs diff {close_to(out.as_numpy(), want, 'output'):.3g}"


async def expect_rest_error(call, status, needle):
    """`call` must raise httpx.HTTPStatusError with `status`; the server's JSON error must hold
    `needle`, and the SDK's message must carry the server's error (not only the URL)."""
    try:
        await call
    except httpx.HTTPStatusError as e:
        code = e.response.status_code
        expect(code == status, f"HTTP {code} ({e}), want {status}")
        body = e.response.json()
        expect(isinstance(body, dict) and needle in body.get("error", ""), f"body {body!r} does not name {needle!r}")
        expect(str(e).startswith(body["error"]), f"the SDK's message {str(e)!r} lacks the server's error")
        return f"{code}: {body['error']}"
    raise AssertionError(f"expected HTTP {status}, got a successful response")


async def expect_grpc_error(call, code, needle):
    try:
        await call
    except grpc.aio.AioRpcError as e:
        expect(e.code() == code, f"{e.code()} ({e.details()}), want {code}")
        expect(needle in (e.details() or ""), f"details {e.details()!r} do not name {needle!r}")
        return f"{e.code()}: {e.details()}"
    raise AssertionError(f"expected {code}, got a successful response")


def all_checks(s, checks, run):
    """`run(coroutine)` runs one coroutine on the event loop the clients belong to."""

    async def rest_server():
        expect(await s.rest.is_server_live(s.base_url) is True, "GET /v2/health/live: live is not true")
        expect(await s.rest.is_server_ready(s.base_url) is True, "GET /v2/health/ready: ready is not true")

    async def grpc_server():
        expect(await s.grpc.is_server_live() is True, "ServerLive.live is not true")
        expect(await s.grpc.is_server_ready() is True, "ServerReady.ready is not true")

    checks.run("rest: InferenceRESTClient.is_server_live, is_server_ready", lambda: run(rest_server()))
    checks.run("grpc: InferenceGRPCClient.is_server_live, is_server_ready", lambda: run(grpc_server()))

    async def models_ready():
        for model in s.args.models:
            expect(await s.rest.is_model_ready(s.base_url, model) is True, f"rest is_model_ready({model}) is not true")
            expect(await s.grpc.is_model_ready(model) is True, f"grpc is_model_ready({model}) is not true")
        return ", ".join(s.args.models)

    async def unknown_not_ready():
        expect(await s.rest.is_model_ready(s.base_url, UNKNOWN) is False, f"rest is_model_ready({UNKNOWN}) is not false")
        try:
            ready = await s.grpc.is_model_ready(UNKNOWN)
        except grpc.aio.AioRpcError as e:  # the protocol allows NOT_FOUND as well as ready=false
            expect(e.code() == grpc.StatusCode.NOT_FOUND, f"grpc is_model_ready({UNKNOWN}): {e.code()}")
        else:
            expect(ready is False, f"grpc is_model_ready({UNKNOWN}) is {ready!r}")

    checks.run("rest and grpc: is_model_ready of every model", lambda: run(models_ready()))
    checks.run(f"rest and grpc: is_model_ready({UNKNOWN}) is false", lambda: run(unknown_not_ready()))

    def metadata(name, versions, platform, inputs, outputs):
        expect(name == MODEL, f"name={name!r}")
        expect(versions == [VERSION], f"versions={versions}")
        expect(platform == PLATFORM, f"platform={platform!r}")
        for kind, got, want in (("inputs", inputs, [(INPUT, "FP32", IN_SHAPE)]), ("outputs", outputs, [(OUTPUT, "FP32", OUT_SHAPE)])):
            expect(got == want, f"{kind}={got}, want {want}")
        return f"{platform}: {INPUT} FP32 {IN_SHAPE} -> {OUTPUT} FP32 {OUT_SHAPE}"

    async def grpc_metadata():
        md = await s.stub.ModelMetadata(pb.ModelMetadataRequest(name=MODEL), timeout=TIMEOUT)
        tensors = lambda ts: [(t.name, t.datatype, list(t.shape)) for t in ts]  # noqa: E731
        return metadata(md.name, list(md.versions), md.platform, tensors(md.inputs), tensors(md.outputs))

    async def rest_metadata():
        resp = await s.httpx.get(f"/v2/models/{MODEL}")
        expect(resp.status_code == 200, f"HTTP {resp.status_code}: {resp.text}")
        md = resp.json()
        tensors = lambda ts: [(t["name"], t["datatype"], t["shape"]) for t in ts]  # noqa: E731
        return metadata(md["name"], md["versions"], md["platform"], tensors(md["inputs"]), tensors(md["outputs"]))

    checks.run(f"{MODEL}: grpc ModelMetadata (the SDK's generated stub)", lambda: run(grpc_metadata()))
    checks.run(f"{MODEL}: rest GET /v2/models/{MODEL} (httpx)", lambda: run(rest_metadata()))

    for batch in (1, 16):
        want = s.gold[batch][1]

        async def rest_infer(binary, binary_output=None, batch=batch, want=want):
            rid = f"sdk-rest-b{batch}-{'binary' if binary else 'json'}-{'binout' if binary_output else 'jsonout'}"
            req = s.request(batch, binary, rid, binary_output=binary_output)
            headers = {}
            resp = await s.rest.infer(s.base_url, req, model_name=MODEL, response_headers=headers)
            # A binary output follows the JSON, whose length this header gives; JSON has none.
            json_length = headers.get("inference-header-content-length")
            expect((json_length is not None) == bool(binary_output), f"Inference-Header-Content-Length: {json_length}")
            return check_response(resp, rid, want, False)

        async def grpc_infer(binary, batch=batch, want=want):
            rid = f"sdk-grpc-b{batch}-{'raw' if binary else 'typed'}"
            return check_response(await s.grpc.infer(s.request(batch, binary, rid)), rid, want, True)

        checks.run(f"{MODEL} b{batch}: rest infer, binary input (Inference-Header-Content-Length)", lambda: run(rest_infer(True)))
        checks.run(f"{MODEL} b{batch}: rest infer, JSON input", lambda: run(rest_infer(False)))
        checks.run(f"{MODEL} b{batch}: rest infer, binary input and binary output", lambda: run(rest_infer(True, True)))
        checks.run(f"{MODEL} b{batch}: grpc infer, raw_input_contents", lambda: run(grpc_infer(True)))
        checks.run(f"{MODEL} b{batch}: grpc infer, typed fp32_contents", lambda: run(grpc_infer(False)))

    def unknown(binary):
        return s.request(1, binary, f"sdk-{UNKNOWN}", model=UNKNOWN)

    checks.run(f"rest: infer on {UNKNOWN} -> 404 naming it", lambda: run(expect_rest_error(
        s.rest.infer(s.base_url, unknown(True), model_name=UNKNOWN), 404, UNKNOWN)))
    checks.run(f"grpc: infer on {UNKNOWN} -> NOT_FOUND naming it", lambda: run(expect_grpc_error(
        s.grpc.infer(unknown(True)), grpc.StatusCode.NOT_FOUND, UNKNOWN)))

    async def still_works():
        rid = "sdk-after-errors"
        return check_response(await s.grpc.infer(s.request(16, True, rid)), rid, s.gold[16][1], True)

    checks.run(f"{MODEL} b16: grpc infer still works after the errors", lambda: run(still_works()))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--grpc", required=True, help="host:port of the gRPC endpoint")
    ap.add_argument("--http", required=True, help="host:port of the REST endpoint")
    ap.add_argument("--models", default=MODEL, type=lambda v: v.split(","), help="comma-separated model names, all must be ready")
    ap.add_argument("--fixtures", required=True, type=Path, help=f"folder with {MODEL}/input|output_b{{1,16}}.npy")
    args = ap.parse_args()

    checks = Checks()
    with asyncio.Runner() as runner:
        async def connect():
            s = Clients(args)
            await asyncio.wait_for(s.channel.channel_ready(), TIMEOUT)
            return s

        try:
            s = runner.run(connect())
        except asyncio.TimeoutError:
            checks.run(f"connect to {args.grpc}", lambda: expect(False, f"could not connect within {TIMEOUT:g}s"))
            return checks.summary()
        all_checks(s, checks, runner.run)
        runner.run(s.close())
    return checks.summary()


if __name__ == "__main__":
    sys.exit(main())
