"""KServe v2 / Open Inference Protocol interop: NVIDIA's official Triton client against candle-serving.

Why: the server claims to be a drop-in for KServe's v2 runtimes, so it is checked with the
client code real users run: tritonclient.grpc (raw_input_contents by default), tritonclient.http
(binary tensor data by default, JSON on request) and, for what tritonclient never sends, the
generated stubs (typed fp32_contents) and plain HTTP requests (nested JSON data). Outputs are
compared with onnxruntime's goldens (models/make_goldens.py); errors by status and message.

Usage:
  python tests/python/kserve_v2.py --grpc 127.0.0.1:PORT --http 127.0.0.1:PORT \
      --models mnist_cnn,mnist_gru,mnist_lstm --fixtures tests/fixtures [--repository]
--repository runs the model repository extension checks instead (index, load, unload under
load); they unload models, so give them a server of their own. The first model carries the
continuous traffic, the second is unloaded and loaded again, the third reloaded while loaded.
Prints one line per check, then `N passed, M failed`; exits non-zero on failure.
"""
import argparse
import http.client
import json
import sys
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from checks import Checks, close_to, expect
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

INPUT, OUTPUT, VERSION, PLATFORM = "image", "probabilities", "1", "onnx_onnxv1"
EXTENSIONS = ("model_repository", "binary_tensor_data")
TIMEOUT = 30.0  # seconds per call

NOT_FOUND, INVALID, UNAVAILABLE = "StatusCode.NOT_FOUND", "StatusCode.INVALID_ARGUMENT", "StatusCode.UNAVAILABLE"


def expect_error(call, statuses, *needles):
    """Runs `call`, which must raise InferenceServerException with one of `statuses` (gRPC's
    "StatusCode.X" or HTTP's "404") and a message holding every needle."""
    statuses = (statuses,) if isinstance(statuses, str) else statuses
    try:
        call()
    except InferenceServerException as e:
        msg = e.message() or ""
        expect(e.status() in statuses, f"status {e.status()} ({msg!r}), want {' or '.join(statuses)}")
        missing = [n for n in needles if n not in msg]
        expect(not missing, f"message {msg!r} does not contain {missing}")
        return f"{e.status()}: {msg}"
    raise AssertionError(f"expected {' or '.join(statuses)}, got a successful response")


class Clients:
    """The clients of one server and the golden data of its models."""

    def __init__(self, args):
        self.args = args
        self.grpc = grpcclient.InferenceServerClient(args.grpc)
        self.http = httpclient.InferenceServerClient(args.http, network_timeout=TIMEOUT)
        self.channel = grpc.insecure_channel(args.grpc)
        self.stub = service_pb2_grpc.GRPCInferenceServiceStub(self.channel)
        self.gold = {m: {b: (np.load(args.fixtures / m / f"input_b{b}.npy"), np.load(args.fixtures / m / f"output_b{b}.npy"))
                         for b in (1, 16)} for m in args.models}

    def grpc_infer(self, model, batch, client=None, **kw):
        """tritonclient.grpc's ModelInfer: the input goes as raw_input_contents."""
        x, _ = self.gold[model][batch]
        inp = grpcclient.InferInput(INPUT, list(x.shape), "FP32").set_data_from_numpy(x)
        return (client or self.grpc).infer(model, [inp], client_timeout=TIMEOUT, **kw)

    def http_infer(self, model, batch, binary, **kw):
        """tritonclient.http's infer, with binary tensor data for input and output or pure JSON."""
        x, _ = self.gold[model][batch]
        inp = httpclient.InferInput(INPUT, list(x.shape), "FP32").set_data_from_numpy(x, binary_data=binary)
        out = httpclient.InferRequestedOutput(OUTPUT, binary_data=binary)
        return self.http.infer(model, [inp], outputs=[out], **kw)

    def rest(self, method, path, body=None):
        """One plain HTTP request; returns (status, content type, parsed JSON body)."""
        conn = http.client.HTTPConnection(self.args.http, timeout=TIMEOUT)
        try:
            data = None if body is None else json.dumps(body)
            conn.request(method, path, body=data, headers={"Content-Type": "application/json"} if data else {})
            resp = conn.getresponse()
            raw = resp.read()
            return resp.status, resp.getheader("Content-Type", ""), json.loads(raw) if raw else None
        finally:
            conn.close()


# ---------------------------------------------------------------------------------------------
# Protocol checks: health, metadata, inference in every encoding, errors.


def protocol_checks(s, checks):
    def server_grpc():
        expect(s.grpc.is_server_live(client_timeout=TIMEOUT) is True, "ServerLive.live is not true")
        expect(s.grpc.is_server_ready(client_timeout=TIMEOUT) is True, "ServerReady.ready is not true")
        md = s.grpc.get_server_metadata(client_timeout=TIMEOUT)
        expect(md.name == "candle-serving", f"name={md.name!r}")
        expect(md.version, "empty version")
        missing = [e for e in EXTENSIONS if e not in md.extensions]
        expect(not missing, f"extensions {list(md.extensions)} lack {missing}")
        return f"{md.name} {md.version} {list(md.extensions)}"

    def server_http():
        expect(s.http.is_server_live(), "GET /v2/health/live is not 200")
        expect(s.http.is_server_ready(), "GET /v2/health/ready is not 200")
        md = s.http.get_server_metadata()
        expect(md.get("name") == "candle-serving", f"name={md.get('name')!r}")
        expect(md.get("version"), "empty version")
        missing = [e for e in EXTENSIONS if e not in md.get("extensions", [])]
        expect(not missing, f"extensions {md.get('extensions')} lack {missing}")
        return f"{md['name']} {md['version']}"

    checks.run("grpc: ServerLive, ServerReady, ServerMetadata", server_grpc)
    checks.run("http: GET /v2/health/live, /v2/health/ready, /v2", server_http)

    for model in s.args.models:
        per_model_checks(s, checks, model)
    error_checks(s, checks, s.args.models[0])
    for model in s.args.models:
        checks.run(f"{model}: grpc infer b16 still works after the errors",
                   lambda: f"max abs diff {close_to(s.grpc_infer(model, 16).as_numpy(OUTPUT), s.gold[model][16][1], 'b16'):.3g}")


def per_model_checks(s, checks, model):
    gold = s.gold[model]
    in_shape = [-1] + list(gold[1][0].shape[1:])
    out_shape = [-1] + list(gold[1][1].shape[1:])

    def ready():
        for version in ("", VERSION):
            expect(s.grpc.is_model_ready(model, version, client_timeout=TIMEOUT) is True,
                   f"grpc ModelReady(version={version!r}) not true")
            expect(s.http.is_model_ready(model, version), f"http ready(version={version!r}) is not 200")

    def metadata(md):
        """`md` in the JSON shape: the HTTP body, or the gRPC message as tritonclient's as_json
        gives it (int64 shapes as strings)."""
        expect(md["name"] == model, f"name={md['name']!r}")
        expect(md["versions"] == [VERSION], f"versions={md['versions']}")
        expect(md["platform"] == PLATFORM, f"platform={md['platform']!r}")
        for kind, want in (("inputs", [(INPUT, "FP32", in_shape)]), ("outputs", [(OUTPUT, "FP32", out_shape)])):
            got = [(t["name"], t["datatype"], [int(d) for d in t["shape"]]) for t in md[kind]]
            expect(got == want, f"{kind}={got}, want {want}")
        return f"{INPUT} {in_shape} -> {OUTPUT} {out_shape}"

    def metadata_grpc(version):
        return metadata(s.grpc.get_model_metadata(model, version, as_json=True, client_timeout=TIMEOUT))

    checks.run(f"{model}: grpc and http model ready (latest, version 1)", ready)
    checks.run(f"{model}: grpc ModelMetadata", lambda: metadata_grpc(""))
    checks.run(f"{model}: grpc ModelMetadata version 1", lambda: metadata_grpc(VERSION))
    checks.run(f"{model}: http GET /v2/models/{model}", lambda: metadata(s.http.get_model_metadata(model)))
    checks.run(f"{model}: http GET /v2/models/{model}/versions/1",
               lambda: metadata(s.http.get_model_metadata(model, VERSION)))

    for batch in (1, 16):
        x, want = gold[batch]

        def grpc_raw(version=""):
            rid = f"{model}-raw-b{batch}"
            result = s.grpc_infer(model, batch, model_version=version, request_id=rid)
            resp = result.get_response()
            expect(resp.id == rid, f"id={resp.id!r}, want {rid!r}")
            expect((resp.model_name, resp.model_version) == (model, VERSION), f"model {resp.model_name!r} {resp.model_version!r}")
            expect([o.name for o in resp.outputs] == [OUTPUT], f"outputs={[o.name for o in resp.outputs]}")
            expect(resp.outputs[0].datatype == "FP32", f"datatype={resp.outputs[0].datatype}")
            expect(len(resp.raw_output_contents) == 1, f"{len(resp.raw_output_contents)} raw_output_contents, want 1")
            return f"max abs diff {close_to(result.as_numpy(OUTPUT), want, 'output'):.3g}"

        def grpc_typed():
            req = service_pb2.ModelInferRequest(model_name=model, id=f"{model}-typed-b{batch}")
            t = req.inputs.add(name=INPUT, datatype="FP32", shape=list(x.shape))
            t.contents.fp32_contents.extend(x.ravel().tolist())
            resp = s.stub.ModelInfer(req, timeout=TIMEOUT)
            expect(resp.id == req.id, f"id={resp.id!r}")
            expect(resp.model_version == VERSION, f"model_version={resp.model_version!r}")
            expect(not resp.raw_output_contents, f"{len(resp.raw_output_contents)} raw_output_contents for typed inputs")
            expect(len(resp.outputs) == 1 and resp.outputs[0].name == OUTPUT, f"outputs={[o.name for o in resp.outputs]}")
            out = resp.outputs[0]
            expect(out.datatype == "FP32" and list(out.shape) == list(want.shape), f"{out.datatype} {list(out.shape)}")
            values = out.contents.fp32_contents
            expect(len(values) == want.size, f"{len(values)} fp32_contents, want {want.size}")
            return f"max abs diff {close_to(np.array(values, np.float32).reshape(want.shape), want, 'output'):.3g}"

        def http_infer(binary):
            rid = f"{model}-{'binary' if binary else 'json'}-b{batch}"
            result = s.http_infer(model, batch, binary, request_id=rid)
            resp = result.get_response()
            expect(resp.get("id") == rid, f"id={resp.get('id')!r}")
            got = (resp.get("model_name"), resp.get("model_version"))
            expect(got == (model, VERSION), f"model_name, model_version = {got}")
            (out,) = resp["outputs"]
            expect(out["name"] == OUTPUT and out["datatype"] == "FP32" and out["shape"] == list(want.shape), f"output {out}")
            size = out.get("parameters", {}).get("binary_data_size")
            if binary:
                expect(size == want.nbytes and "data" not in out, f"binary_data_size={size}, want {want.nbytes} and no data")
            else:
                n = len(out.get("data", []))
                expect(size is None and n == want.size, f"binary_data_size={size}, {n} values in data")
            return f"max abs diff {close_to(result.as_numpy(OUTPUT), want, 'output'):.3g}"

        def http_nested():
            body = {"id": "nested", "inputs": [{"name": INPUT, "shape": list(x.shape), "datatype": "FP32", "data": x.tolist()}]}
            status, ctype, resp = s.rest("POST", f"/v2/models/{model}/versions/1/infer", body)
            expect(status == 200, f"HTTP {status}: {resp}")
            expect(ctype.startswith("application/json"), f"Content-Type {ctype!r}")
            expect(resp["id"] == "nested", f"id={resp.get('id')!r}")
            (out,) = resp["outputs"]
            expect(out["shape"] == list(want.shape), f"shape={out['shape']}")
            return f"max abs diff {close_to(np.array(out['data'], np.float32).reshape(want.shape), want, 'output'):.3g}"

        checks.run(f"{model} b{batch}: grpc infer, raw_input_contents", grpc_raw)
        checks.run(f"{model} b{batch}: grpc infer version 1", lambda: grpc_raw(VERSION))
        checks.run(f"{model} b{batch}: grpc infer, typed fp32_contents", grpc_typed)
        checks.run(f"{model} b{batch}: http infer, binary tensor data", lambda: http_infer(True))
        checks.run(f"{model} b{batch}: http infer, JSON (flat data)", lambda: http_infer(False))
        checks.run(f"{model} b{batch}: http infer, JSON nested data (plain request)", http_nested)

    def selected_output():
        result = s.grpc_infer(model, 1, outputs=[grpcclient.InferRequestedOutput(OUTPUT)])
        names = [o.name for o in result.get_response().outputs]
        expect(names == [OUTPUT], f"outputs={names}")
        close_to(result.as_numpy(OUTPUT), gold[1][1], "output")

    checks.run(f"{model}: grpc infer with outputs=[{OUTPUT}]", selected_output)


def error_checks(s, checks, model):
    x = s.gold[model][1][0]
    bad_shape = np.zeros([1, 27] + list(x.shape[2:]), np.float32)

    def infer(proto, model=model, name=INPUT, datatype="FP32", data=x, version="", output=None):
        """One tritonclient request with everything overridable, to get each error."""
        lib = grpcclient if proto == "grpc" else httpclient
        inp = lib.InferInput(name, list(data.shape), datatype).set_data_from_numpy(data)
        outputs = None if output is None else [lib.InferRequestedOutput(output)]
        if proto == "grpc":
            return s.grpc.infer(model, [inp], model_version=version, outputs=outputs, client_timeout=TIMEOUT)
        return s.http.infer(model, [inp], model_version=version, outputs=outputs)

    def metadata(proto, version):
        if proto == "grpc":
            return s.grpc.get_model_metadata(model, version, client_timeout=TIMEOUT)
        return s.http.get_model_metadata(model, version)

    for proto, not_found, invalid in (("grpc", NOT_FOUND, INVALID), ("http", "404", "400")):
        cases = (
            ("infer unknown model", not_found, lambda: infer(proto, model="no_such_model"), ["no_such_model"]),
            ("infer unknown version 7", not_found, lambda: infer(proto, version="7"), ["7"]),
            ("metadata of unknown version 7", not_found, lambda: metadata(proto, "7"), ["7"]),
            ("unknown input name", invalid, lambda: infer(proto, name="no_such_input"), ["no_such_input"]),
            ("FP64 for an FP32 input", invalid, lambda: infer(proto, datatype="FP64", data=x.astype(np.float64)), ["FP64", "FP32"]),
            (f"shape {list(bad_shape.shape)}", invalid, lambda: infer(proto, data=bad_shape), ["27"]),
            ("unknown requested output", invalid, lambda: infer(proto, output="no_such_output"), ["no_such_output"]),
        )
        for what, status, call, needles in cases:
            # checks.run calls at once, so the lambdas see this iteration's values.
            checks.run(f"{proto}: {what} -> {status}", lambda: expect_error(call, status, *needles))

    def http_error_body():
        for path in ("/v2/models/no_such_model", f"/v2/models/{model}/versions/7"):
            status, ctype, body = s.rest("GET", path)
            expect(status == 404, f"GET {path}: HTTP {status}, want 404")
            expect(ctype.startswith("application/json"), f"GET {path}: Content-Type {ctype!r}")
            expect(isinstance(body, dict) and list(body) == ["error"] and body["error"], f"GET {path}: body {body!r}")
        status, _, body = s.rest("POST", f"/v2/models/{model}/infer", {"inputs": "not a list"})
        expect(status == 400 and isinstance(body, dict) and list(body) == ["error"], f"malformed infer: HTTP {status} {body!r}")
        return body["error"]

    def not_ready():
        expect(s.http.is_model_ready("no_such_model") is False, "GET /v2/models/no_such_model/ready is 200")
        expect(s.http.is_model_ready(model, "7") is False, f"GET /v2/models/{model}/versions/7/ready is 200")

    checks.run('http: errors are JSON {"error": "..."} with 404 / 400', http_error_body)
    checks.run("http: ready of unknown model or version is not 200", not_ready)


# ---------------------------------------------------------------------------------------------
# Model repository extension: index, load, unload while other models take traffic.


class Traffic:
    """Threads that infer on one model without pause (gRPC through tritonclient, REST through
    plain requests) and count every request that fails or answers wrongly."""

    def __init__(self, s, model, grpc_threads=3, rest_threads=1):
        self.s, self.model = s, model
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.ok, self.failures = 0, []
        self.threads = [threading.Thread(target=self.grpc_loop, daemon=True) for _ in range(grpc_threads)]
        self.threads += [threading.Thread(target=self.rest_loop, daemon=True) for _ in range(rest_threads)]

    def record(self, error):
        with self.lock:
            if error is None:
                self.ok += 1
            else:
                self.failures.append(error)

    def grpc_loop(self):
        client = grpcclient.InferenceServerClient(self.s.args.grpc)  # one channel per thread
        want = self.s.gold[self.model][1][1]
        while not self.stop.is_set():
            try:
                close_to(self.s.grpc_infer(self.model, 1, client=client).as_numpy(OUTPUT), want, "output")
                self.record(None)
            except Exception as e:  # noqa: BLE001 - counted, reported at the end
                self.record(f"grpc: {e}")
        client.close()

    def rest_loop(self):
        x, want = self.s.gold[self.model][1]
        body = {"inputs": [{"name": INPUT, "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}]}
        while not self.stop.is_set():
            try:
                status, _, resp = self.s.rest("POST", f"/v2/models/{self.model}/infer", body)
                expect(status == 200, f"HTTP {status}: {resp}")
                close_to(np.array(resp["outputs"][0]["data"], np.float32).reshape(want.shape), want, "output")
                self.record(None)
            except Exception as e:  # noqa: BLE001 - counted, reported at the end
                self.record(f"rest: {e}")

    def count(self):
        with self.lock:
            return self.ok + len(self.failures)

    def __enter__(self):
        for t in self.threads:
            t.start()
        deadline = time.monotonic() + TIMEOUT
        while self.count() < 2 * len(self.threads):  # every thread is going before anything changes
            if time.monotonic() > deadline:
                self.__exit__()
                raise AssertionError(f"traffic on {self.model} did not start: {self.failures[:1]}")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(TIMEOUT)


def repository_checks(s, checks):
    traffic_model, cycled, reloaded = (s.args.models + [None, None])[:3]
    expect(cycled is not None, "--repository needs at least two models")

    def index(proto):
        """{name: (version, state, reason)} from RepositoryIndex."""
        if proto == "grpc":
            entries = s.grpc.get_model_repository_index(client_timeout=TIMEOUT).models
            return {m.name: (m.version, m.state, m.reason) for m in entries}
        return {m["name"]: (m.get("version"), m.get("state"), m.get("reason", "")) for m in s.http.get_model_repository_index()}

    def all_ready(proto):
        got = {name: (version, state) for name, (version, state, _) in index(proto).items()}
        want = {m: (VERSION, "READY") for m in s.args.models}
        expect(got == want, f"index {got}, want {want}")
        return f"{len(got)} models READY"

    def expect_unloaded(model, proto):
        """After an unload: not ready, inference refused, the index says UNAVAILABLE."""
        expect(s.grpc.is_model_ready(model, client_timeout=TIMEOUT) is False, f"grpc ModelReady({model}) still true")
        expect(s.http.is_model_ready(model) is False, f"http ready({model}) still 200")
        expect_error(lambda: s.grpc_infer(model, 1), (NOT_FOUND, UNAVAILABLE), model)
        expect_error(lambda: s.http_infer(model, 1, True), ("404", "503"), model)
        entry = index(proto).get(model)
        expect(entry is not None and entry[1] == "UNAVAILABLE", f"{proto} index entry of {model}: {entry}, want UNAVAILABLE")

    def repo(proto, action, model):
        """tritonclient's load_model / unload_model, over gRPC or HTTP."""
        if proto == "grpc":
            return getattr(s.grpc, action)(model, client_timeout=TIMEOUT)
        return getattr(s.http, action)(model)

    def expect_loaded(model):
        expect(s.grpc.is_model_ready(model, client_timeout=TIMEOUT) is True, f"ModelReady({model}) not true after load")
        close_to(s.grpc_infer(model, 16).as_numpy(OUTPUT), s.gold[model][16][1], f"{model} b16 after load")

    checks.run("grpc RepositoryIndex: every model, version 1, READY", lambda: all_ready("grpc"))
    checks.run("http POST /v2/repository/index: every model, version 1, READY", lambda: all_ready("http"))
    checks.run("grpc RepositoryModelLoad of an unknown model -> error naming it", lambda: expect_error(
        lambda: repo("grpc", "load_model", "no_such_model"), (NOT_FOUND, INVALID), "no_such_model"))
    checks.run("http load of an unknown model -> 4xx naming it", lambda: expect_error(
        lambda: repo("http", "load_model", "no_such_model"), ("400", "404"), "no_such_model"))

    def under_load():
        with Traffic(s, traffic_model) as traffic:
            before = traffic.count()
            for proto in ("grpc", "http", "grpc"):
                repo(proto, "unload_model", cycled)
                expect_unloaded(cycled, proto)
                repo(proto, "load_model", cycled)  # answers once the model is ready
                expect_loaded(cycled)
            if reloaded is not None:
                # Loading a model that is loaded reloads it, and it stays available.
                repo("grpc", "load_model", reloaded)
                expect_loaded(reloaded)
            during = traffic.count() - before
        expect(during > 0, f"no request on {traffic_model} completed while models were unloaded and loaded")
        failed = traffic.failures
        expect(not failed, f"{len(failed)} of {traffic.count()} requests on {traffic_model} failed, first: {failed[:1]}")
        return f"{traffic.ok} requests on {traffic_model}, {during} while 3 unload/load cycles of {cycled} ran, 0 failed"

    def unload_in_flight():
        """Requests racing the unload of their own model either finish with the right answer or
        are refused cleanly (NOT_FOUND / UNAVAILABLE); none breaks another way."""
        with Traffic(s, cycled, grpc_threads=4, rest_threads=0) as traffic:
            repo("grpc", "unload_model", cycled)
            time.sleep(0.2)
        clean = ("StatusCode.NOT_FOUND", "StatusCode.UNAVAILABLE")
        other = [f for f in traffic.failures if not any(c in f for c in clean)]
        expect(not other, f"{len(other)} requests failed otherwise, first: {other[0] if other else ''}")
        expect_unloaded(cycled, "grpc")
        repo("grpc", "load_model", cycled)
        expect_loaded(cycled)
        return f"{traffic.ok} answered, {len(traffic.failures)} refused cleanly"

    checks.run(f"unload/load {cycled}, reload {reloaded}, under traffic on {traffic_model}: 0 failed", under_load)
    checks.run(f"unload {cycled} while its own requests are in flight", unload_in_flight)
    checks.run("grpc RepositoryIndex afterwards: every model READY again", lambda: all_ready("grpc"))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--grpc", required=True, help="host:port of the gRPC endpoint")
    ap.add_argument("--http", required=True, help="host:port of the REST endpoint")
    ap.add_argument("--models", required=True, type=lambda v: v.split(","), help="comma-separated model names")
    ap.add_argument("--fixtures", required=True, type=Path, help="folder with <model>/input|output_b{1,16}.npy")
    ap.add_argument("--repository", action="store_true", help="run the model repository checks (they unload models)")
    args = ap.parse_args()

    checks = Checks()
    s = Clients(args)
    try:
        grpc.channel_ready_future(s.channel).result(timeout=TIMEOUT)
    except grpc.FutureTimeoutError:
        checks.run(f"connect to {args.grpc}", lambda: expect(False, f"could not connect within {TIMEOUT:g}s"))
        return checks.summary()
    if args.repository:
        repository_checks(s, checks)
    else:
        protocol_checks(s, checks)
    for client in (s.grpc, s.http, s.channel):
        client.close()
    return checks.summary()


if __name__ == "__main__":
    sys.exit(main())
