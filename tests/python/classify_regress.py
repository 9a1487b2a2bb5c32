"""Classify, Regress and MultiInference through the official TF Serving client
(classification_pb2, regression_pb2, inference_pb2) and REST, against the half_plus_two model
(models/make_savedmodels.py: y = 0.5x + 2, y2 = 0.5x + 3), with the answers TF Serving's own
test suite expects, and every error with its code and message.

Usage: python tests/python/classify_regress.py --target 127.0.0.1:PORT --rest http://127.0.0.1:PORT \\
           --model half_plus_two --other mnist_cnn
Prints one line per check, then `N passed, M failed`; exits non-zero on failure.
"""
import argparse
import json
import os
import sys
import urllib.error
import urllib.request

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import grpc  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from checks import Checks, expect  # noqa: E402
from tensorflow_serving.apis import (  # noqa: E402
    classification_pb2,
    inference_pb2,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)


def example(**features):
    e = tf.train.Example()
    for key, value in features.items():
        values = value if isinstance(value, list) else [value]
        if all(isinstance(v, int) for v in values):
            e.features.feature[key].int64_list.value.extend(values)
        else:
            e.features.feature[key].float_list.value.extend(values)
    return e


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target", required=True)
    ap.add_argument("--rest", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--other", required=True, help="a second model, for the MultiInference across models error")
    args = ap.parse_args()
    checks = Checks()
    channel = grpc.insecure_channel(args.target)
    grpc.channel_ready_future(channel).result(timeout=30)
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)

    def classify(signature, *examples, context=None, model=args.model):
        request = classification_pb2.ClassificationRequest()
        request.model_spec.name = model
        request.model_spec.signature_name = signature
        if context is not None:
            request.input.example_list_with_context.context.CopyFrom(context)
            request.input.example_list_with_context.examples.extend(examples)
        else:
            request.input.example_list.examples.extend(examples)
        return stub.Classify(request, timeout=30)

    def regress(signature, *examples):
        request = regression_pb2.RegressionRequest()
        request.model_spec.name = args.model
        request.model_spec.signature_name = signature
        request.input.example_list.examples.extend(examples)
        return stub.Regress(request, timeout=30)

    def check_classify():
        response = classify("classify_x_to_y", example(x=2.0))
        (classification,) = response.result.classifications
        (cls,) = classification.classes
        expect((cls.label, cls.score) == ("", 3.0), f"{cls}")
        expect(response.model_spec.name == args.model and response.model_spec.signature_name == "classify_x_to_y", f"{response.model_spec}")
        expect(response.model_spec.version.value == 1, f"{response.model_spec}")

    checks.run("Classify x=2.0 gives 1 class with score 3.0", check_classify)

    def check_labels():
        response = classify("classify_sign", example(x=-1.5), example(x=0.0), example(x=[2.0]))
        for x, classification in zip((-1.5, 0.0, 2.0), response.result.classifications):
            scores = np.exp([-x, 0.0, x]) / np.exp([-x, 0.0, x]).sum()
            expect([c.label for c in classification.classes] == ["negative", "zero", "positive"], f"{classification}")
            expect(np.allclose([c.score for c in classification.classes], scores, atol=1e-6), f"x={x}: {classification}")

    checks.run("Classify with string labels and several scores, one per example in order", check_labels)

    def check_regress():
        response = regress("regress_x_to_y", example(x=2.0))
        expect([r.value for r in response.result.regressions] == [3.0], f"{response.result}")
        response = regress("regress_x_to_y2", example(x=2.0), example(x=4.0))
        expect([r.value for r in response.result.regressions] == [4.0, 5.0], f"{response.result}")

    checks.run("Regress gives 3.0 (and y2 = 0.5x + 3 per example)", check_regress)

    def check_context():
        response = classify("classify_x_to_y", example(), example(x=4.0), context=example(x=2.0))
        scores = [c.classes[0].score for c in response.result.classifications]
        expect(scores == [3.0, 4.0], f"context fills the first, the example wins in the second: {scores}")

    checks.run("ExampleListWithContext: the context's features merge, the example wins", check_context)

    def check_multi():
        request = inference_pb2.MultiInferenceRequest()
        for signature, method in (("regress_x_to_y", "tensorflow/serving/regress"), ("classify_x_to_y", "tensorflow/serving/classify")):
            task = request.tasks.add()
            task.model_spec.name = args.model
            task.model_spec.signature_name = signature
            task.method_name = method
        request.input.example_list.examples.add().CopyFrom(example(x=2.0))
        response = stub.MultiInference(request, timeout=30)
        expect(len(response.results) == 2, f"{response}")
        expect(response.results[0].regression_result.regressions[0].value == 3.0, f"{response.results[0]}")
        expect(response.results[1].classification_result.classifications[0].classes[0].score == 3.0, f"{response.results[1]}")
        expect(response.results[0].model_spec.signature_name == "regress_x_to_y", f"{response.results[0].model_spec}")

    checks.run("MultiInference gives both", check_multi)

    def post(verb, body):
        req = urllib.request.Request(f"{args.rest}/v1/models/{args.model}:{verb}", data=json.dumps(body).encode())
        try:
            with urllib.request.urlopen(req, timeout=30) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def check_rest():
        status, doc = post("classify", {"signature_name": "classify_x_to_y", "examples": [{"x": 2.0}]})
        expect((status, doc) == (200, {"results": [[["", 3.0]]]}), f"{status} {doc}")
        status, doc = post("regress", {"signature_name": "regress_x_to_y", "examples": [{"x": 2.0}]})
        expect((status, doc) == (200, {"results": [3.0]}), f"{status} {doc}")
        status, doc = post("regress", {"signature_name": "regress_x_to_y", "context": {"x": 2.0}, "examples": [{}, {"x": [6.0]}]})
        expect((status, doc) == (200, {"results": [3.0, 5.0]}), f"{status} {doc}")

    checks.run('REST classify {"examples":[{"x":2.0}]} gives {"results": [[["", 3.0]]]}, and regress', check_rest)

    def error(call, code, *words):
        def run():
            try:
                call()
            except grpc.RpcError as e:
                expect(e.code() == code, f"{e.code()}: {e.details()}")
                for word in words:
                    expect(word in e.details(), f"{word!r} not in {e.details()!r}")
                return e.details()
            raise AssertionError("the call succeeded")
        return run

    invalid = grpc.StatusCode.INVALID_ARGUMENT
    checks.run("missing feature: INVALID_ARGUMENT naming it and the example",
               error(lambda: classify("classify_x_to_y", example(x=1.0), example(x2=1.0)), invalid, "Feature: x", "is required", "example 1"))
    checks.run("wrong feature type: INVALID_ARGUMENT",
               error(lambda: regress("regress_x_to_y", example(x=2)), invalid, "Key: x", "Expected type: float", "int64"))
    checks.run("unknown signature: INVALID_ARGUMENT",
               error(lambda: regress("nope", example(x=2.0)), invalid, "No signature was found with the name: nope"))
    checks.run("method mismatch: INVALID_ARGUMENT",
               error(lambda: classify("regress_x_to_y", example(x=2.0)), invalid,
                     "Expected classification signature method_name to be tensorflow/serving/classify. Was: tensorflow/serving/regress"))
    checks.run("a predict signature used for Regress: INVALID_ARGUMENT",
               error(lambda: regress("", example(x=2.0)), invalid, "Was: tensorflow/serving/predict"))
    checks.run("empty input: INVALID_ARGUMENT", error(lambda: classify("classify_x_to_y"), invalid, "Input is empty"))

    def across_models():
        request = inference_pb2.MultiInferenceRequest()
        for model in (args.model, args.other):
            task = request.tasks.add()
            task.model_spec.name = model
            task.model_spec.signature_name = "regress_x_to_y"
            task.method_name = "tensorflow/serving/regress"
        request.input.example_list.examples.add().CopyFrom(example(x=2.0))
        stub.MultiInference(request, timeout=30)

    checks.run("MultiInference across two models: INVALID_ARGUMENT", error(across_models, invalid, "must access the same model name"))
    checks.run("Classify on an ONNX model: FAILED_PRECONDITION naming its signatures",
               error(lambda: classify("", example(x=2.0), model=args.other), grpc.StatusCode.FAILED_PRECONDITION, "serving_default"))

    def still_serving():
        request = predict_pb2.PredictRequest()
        request.model_spec.name = args.model
        request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array([[2.0], [4.0]], dtype=np.float32)))
        y = tf.make_ndarray(stub.Predict(request, timeout=30).outputs["y"])
        expect(np.allclose(y, [[3.0], [4.0]]), f"{y}")

    checks.run("after every error the server still serves Predict", still_serving)
    return checks.summary()


if __name__ == "__main__":
    sys.exit(main())
