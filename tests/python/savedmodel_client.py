"""The SavedModel test set through the official TF Serving client, against TensorFlow's own
answers (models/make_savedmodels.py wrote them).

For every model and every case in tests/fixtures/savedmodel/goldens/<model>/cases.json:
  * gRPC Predict (tensorflow_serving.apis, tf.make_tensor_proto) at batch 1 and 16;
  * REST :predict, row format ("instances") and columnar ("inputs");
  * each row of the batch of 16 sent alone equals that row of the batch (within 1e-6);
  * GetModelMetadata's SignatureDefMap equals the signature_def map that TensorFlow reads
    from the model's saved_model.pb (the serve meta graph), and REST /metadata equals its
    JSON form.

Usage: python tests/python/savedmodel_client.py --target 127.0.0.1:PORT --rest http://127.0.0.1:PORT
           --goldens tests/fixtures/savedmodel/goldens --model NAME=VERSION_DIR [--model ...]
Prints one line per check, then `N passed, M failed`; exits non-zero on failure.
"""
import argparse
import json
import os
import sys
import urllib.request
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import grpc  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from checks import Checks, close_to, expect  # noqa: E402
from google.protobuf import json_format  # noqa: E402
from tensorflow.core.protobuf import saved_model_pb2  # noqa: E402
from tensorflow_serving.apis import (  # noqa: E402
    get_model_metadata_pb2,
    predict_pb2,
    prediction_service_pb2_grpc,
)

ATOL = 1e-5
ROW_ATOL = 1e-6


def post(url, body):
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def file_signatures(version_dir):
    """The signature_def map as TensorFlow parses it from the file."""
    model = saved_model_pb2.SavedModel()
    model.ParseFromString((Path(version_dir) / "saved_model.pb").read_bytes())
    meta = next(m for m in model.meta_graphs if set(m.meta_info_def.tags) == {"serve"})
    return meta.signature_def


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target", required=True)
    ap.add_argument("--rest", required=True)
    ap.add_argument("--goldens", required=True, type=Path)
    ap.add_argument("--model", action="append", required=True, help="NAME=VERSION_DIR")
    args = ap.parse_args()

    checks = Checks()
    channel = grpc.insecure_channel(args.target)
    grpc.channel_ready_future(channel).result(timeout=30)
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)

    for entry in args.model:
        name, version_dir = entry.split("=", 1)
        golden = args.goldens / name
        cases = json.loads((golden / "cases.json").read_text())

        def grpc_predict(signature, inputs, name=name):
            request = predict_pb2.PredictRequest()
            request.model_spec.name = name
            request.model_spec.signature_name = signature
            for key, value in inputs.items():
                request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
            response = stub.Predict(request, timeout=30)
            expect(response.model_spec.signature_name == signature, f"signature_name {response.model_spec.signature_name!r}")
            return {k: tf.make_ndarray(v) for k, v in response.outputs.items()}

        for case in cases:
            signature, batch = case["signature"], case["batch"]
            inputs = {k: np.load(golden / f) for k, f in case["inputs"].items()}
            want = {k: np.load(golden / f) for k, f in case["outputs"].items()}
            label = f"{name} {signature} batch {batch}"

            def compare(got, label=label, want=want):
                expect(sorted(got) == sorted(want), f"outputs {sorted(got)} != {sorted(want)}")
                for key, value in want.items():
                    close_to(np.asarray(got[key], dtype=np.float32), value, f"{label} {key}", ATOL)

            checks.run(f"{label}: gRPC Predict matches TensorFlow", lambda: compare(grpc_predict(signature, inputs)))

            def rest_rows(signature=signature, inputs=inputs, batch=batch):
                keys = list(inputs)
                rows = [{k: inputs[k][i].tolist() for k in keys} for i in range(batch)]
                body = {"signature_name": signature, "instances": rows if len(keys) > 1 else [r[keys[0]] for r in rows]}
                predictions = post(f"{args.rest}/v1/models/{name}:predict", body)["predictions"]
                if isinstance(predictions[0], dict):
                    return {k: np.array([p[k] for p in predictions]) for k in predictions[0]}
                (only,) = want.keys()
                return {only: np.array(predictions)}

            checks.run(f"{label}: REST instances match TensorFlow", lambda: compare(rest_rows()))

            def rest_columns(signature=signature, inputs=inputs):
                body = {"signature_name": signature, "inputs": {k: v.tolist() for k, v in inputs.items()}}
                outputs = post(f"{args.rest}/v1/models/{name}:predict", body)["outputs"]
                if not isinstance(outputs, dict):
                    (only,) = want.keys()
                    outputs = {only: outputs}
                return {k: np.array(v) for k, v in outputs.items()}

            checks.run(f"{label}: REST inputs match TensorFlow", lambda: compare(rest_columns()))

            if batch > 1:
                def rows_alone(signature=signature, inputs=inputs, batch=batch):
                    # Batch 1 and batch 16 run different GEMM tilings, so the sums are
                    # ordered differently: equal to float rounding, not bit for bit (as in
                    # TensorFlow itself).
                    together = grpc_predict(signature, inputs)
                    worst = 0.0
                    for i in range(batch):
                        alone = grpc_predict(signature, {k: v[i:i + 1] for k, v in inputs.items()})
                        for key, value in together.items():
                            worst = max(worst, close_to(alone[key][0], value[i], f"row {i} of {key} alone", ROW_ATOL))
                    return f"max |diff| {worst:.2g}"

                checks.run(f"{label}: each row alone equals its row in the batch", rows_alone)

        def metadata(name=name, version_dir=version_dir):
            request = get_model_metadata_pb2.GetModelMetadataRequest()
            request.model_spec.name = name
            request.metadata_field.append("signature_def")
            response = stub.GetModelMetadata(request, timeout=30)
            served = get_model_metadata_pb2.SignatureDefMap()
            response.metadata["signature_def"].Unpack(served)
            declared = file_signatures(version_dir)
            expect(sorted(served.signature_def) == sorted(declared), f"signatures {sorted(served.signature_def)} != {sorted(declared)}")
            for key, signature in declared.items():
                expect(served.signature_def[key] == signature, f"{key}: {served.signature_def[key]} != {signature}")
            expect("__saved_model_init_op" in served.signature_def or "__saved_model_init_op" not in declared, "init op listed")

        checks.run(f"{name}: GetModelMetadata equals the file's SignatureDefMap", metadata)

        def rest_metadata(name=name, version_dir=version_dir):
            with urllib.request.urlopen(f"{args.rest}/v1/models/{name}/metadata", timeout=30) as response:
                document = json.loads(response.read())
            served = document["metadata"]["signature_def"]["signature_def"]
            declared = {k: json_format.MessageToDict(v, preserving_proto_field_name=True, including_default_value_fields=True)
                        for k, v in file_signatures(version_dir).items()}
            for signature in declared.values():
                signature.pop("defaults", None)
            for signature in served.values():
                signature.pop("defaults", None)
            expect(served == declared, f"{json.dumps(served, sort_keys=True)} != {json.dumps(declared, sort_keys=True)}")

        checks.run(f"{name}: REST metadata equals the file's SignatureDefMap", rest_metadata)

    return checks.summary()


if __name__ == "__main__":
    sys.exit(main())
