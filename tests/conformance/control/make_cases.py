"""Extra Loop/Scan cases in ONNX node-test layout, for what ONNX's own five cases leave out.

Why: test_loop11, test_scan9_sum and test_scan_sum never read an outer-scope value that is
only known per request, never nest a body, never use scan axes/directions, cond-only loops,
early exit, or zero iterations. Expected outputs come from onnxruntime and must agree with
ONNX's reference evaluator (onnx.reference) before anything is written.
Writes tests/conformance/control/<case>/{model.onnx,test_data_set_0/{input,output}_K.pb}.

Run: .venv/bin/python tests/conformance/control/make_cases.py   (onnx 1.16.2, onnxruntime 1.18.1)
"""
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh
from onnx.reference import ReferenceEvaluator

HERE = Path(__file__).resolve().parent
F, I64, B = T.FLOAT, T.INT64, T.BOOL


def vi(name, elem, shape):
    return h.make_tensor_value_info(name, elem, shape)


def const(name, value):
    return h.make_node("Constant", [], [name], value=nh.from_array(np.asarray(value), name + "_value"))


def scan_axes_directions():
    """Opset 16 Scan: one input reversed along axis 0, one read along axis -1, outputs
    stacked reversed along axis 0 and forward along axis -1."""
    body = h.make_graph(
        [
            h.make_node("Mul", ["xt", "yt"], ["prod"]),
            h.make_node("Add", ["s", "prod"], ["s_out"]),
            h.make_node("Identity", ["s_out"], ["scan_s"]),
            h.make_node("Identity", ["prod"], ["scan_p"]),
        ],
        "body",
        [vi("s", F, [2]), vi("xt", F, [2]), vi("yt", F, [2])],
        [vi("s_out", F, [2]), vi("scan_s", F, [2]), vi("scan_p", F, [2])],
    )
    node = h.make_node("Scan", ["init", "x", "y"], ["final", "out_s", "out_p"], body=body, num_scan_inputs=2,
                       scan_input_axes=[0, -1], scan_input_directions=[1, 0],
                       scan_output_axes=[0, -1], scan_output_directions=[1, 0])
    graph = h.make_graph([node], "scan_axes_directions",
                         [vi("init", F, [2]), vi("x", F, [4, 2]), vi("y", F, [2, 4])],
                         [vi("final", F, [2]), vi("out_s", F, [4, 2]), vi("out_p", F, [2, 4])])
    rng = np.random.default_rng(1)
    inputs = [rng.standard_normal(s).astype(np.float32) for s in ([2], [4, 2], [2, 4])]
    return h.make_model(graph, opset_imports=[h.make_opsetid("", 16)]), inputs


def scan_axes_directions_numpy(init, x, y):
    """onnx.reference's Scan only scans forward, so this case is checked against numpy."""
    s, sums, prods = init.copy(), [], []
    for t in range(4):
        prod = x[3 - t] * y[:, t]
        s = s + prod
        sums.append(s)
        prods.append(prod)
    return [s, np.stack(sums[::-1], 0), np.stack(prods, -1)]


def loop_cond_outer_read():
    """Opset 13 Loop with cond only (no M): doubles x until x[0] reaches `limit`, a graph
    input the body reads from the outer scope; scan output of every x."""
    body = h.make_graph(
        [
            const("two", np.float32(2.0)),
            const("zero", np.int64(0)),
            h.make_node("Mul", ["x_in", "two"], ["x_out"]),
            h.make_node("Gather", ["x_out", "zero"], ["first"], axis=0),
            h.make_node("Less", ["first", "limit"], ["cond_out"]),
            h.make_node("Identity", ["x_out"], ["x_scan"]),
        ],
        "body",
        [vi("i", I64, []), vi("cond_in", B, []), vi("x_in", F, [3])],
        [vi("cond_out", B, []), vi("x_out", F, [3]), vi("x_scan", F, [3])],
    )
    node = h.make_node("Loop", ["", "cond", "x"], ["x_final", "xs"], body=body)
    graph = h.make_graph([node], "loop_cond_outer_read",
                         [vi("cond", B, []), vi("x", F, [3]), vi("limit", F, [])],
                         [vi("x_final", F, [3]), vi("xs", F, [None, 3])])
    inputs = [np.array(True), np.array([1.5, -1.0, 0.25], np.float32), np.array(20.0, np.float32)]
    return h.make_model(graph, opset_imports=[h.make_opsetid("", 13)]), inputs


def loop_early_exit():
    """Opset 16 Loop with both M and cond: M = 5 but the body clears cond at iteration 2,
    so three iterations run; the carried sum adds an initializer of the outer graph."""
    body = h.make_graph(
        [
            const("two", np.int64(2)),
            h.make_node("Equal", ["i", "two"], ["stop"]),
            h.make_node("Not", ["stop"], ["cond_out"]),
            h.make_node("Add", ["acc_in", "step"], ["acc_out"]),
            h.make_node("Cast", ["i"], ["i_f"], to=F),
            h.make_node("Mul", ["acc_out", "i_f"], ["scaled"]),
        ],
        "body",
        [vi("i", I64, []), vi("cond_in", B, []), vi("acc_in", F, [2])],
        [vi("cond_out", B, []), vi("acc_out", F, [2]), vi("scaled", F, [2])],
    )
    node = h.make_node("Loop", ["M", "cond", "acc"], ["acc_final", "scaled_all"], body=body)
    graph = h.make_graph([node], "loop_early_exit",
                         [vi("M", I64, []), vi("cond", B, []), vi("acc", F, [2])],
                         [vi("acc_final", F, [2]), vi("scaled_all", F, [None, 2])],
                         initializer=[nh.from_array(np.array([0.5, -2.0], np.float32), "step")])
    inputs = [np.array(5, np.int64), np.array(True), np.array([1.0, 3.0], np.float32)]
    return h.make_model(graph, opset_imports=[h.make_opsetid("", 16)]), inputs


def loop_zero_trips():
    """Opset 13 Loop with M = 0: carried values come back unchanged and the scan output is
    empty, shaped [0, 3] from the body's declared output shape."""
    body = h.make_graph(
        [h.make_node("Identity", ["cond_in"], ["cond_out"]), h.make_node("Add", ["v", "v"], ["v_out"]),
         h.make_node("Identity", ["v_out"], ["v_scan"])],
        "body",
        [vi("i", I64, []), vi("cond_in", B, []), vi("v", F, [3])],
        [vi("cond_out", B, []), vi("v_out", F, [3]), vi("v_scan", F, [3])],
    )
    node = h.make_node("Loop", ["M", "", "v0"], ["v_final", "v_all"], body=body)
    graph = h.make_graph([node], "loop_zero_trips", [vi("M", I64, []), vi("v0", F, [3])],
                         [vi("v_final", F, [3]), vi("v_all", F, [None, 3])])
    inputs = [np.array(0, np.int64), np.array([1.0, 2.0, 3.0], np.float32)]
    return h.make_model(graph, opset_imports=[h.make_opsetid("", 13)]), inputs


def nested_scan_loop():
    """Opset 16: a Scan over rows whose body runs a Loop; the inner Loop body reads `w` (a
    graph input, two scopes out) and `bias` (an initializer of the main graph)."""
    inner = h.make_graph(
        [h.make_node("Mul", ["h_in", "w"], ["hw"]), h.make_node("Add", ["hw", "bias"], ["h_out"]),
         h.make_node("Identity", ["cond_in"], ["cond_out"])],
        "inner",
        [vi("j", I64, []), vi("cond_in", B, []), vi("h_in", F, [3])],
        [vi("cond_out", B, []), vi("h_out", F, [3])],
    )
    outer = h.make_graph(
        [
            h.make_node("Add", ["s", "row"], ["h0"]),
            h.make_node("Loop", ["trips", "", "h0"], ["h"], body=inner),
            h.make_node("Identity", ["h"], ["h_scan"]),
        ],
        "outer",
        [vi("s", F, [3]), vi("row", F, [3])],
        [vi("h", F, [3]), vi("h_scan", F, [3])],
    )
    node = h.make_node("Scan", ["s0", "rows"], ["s_final", "hs"], body=outer, num_scan_inputs=1)
    graph = h.make_graph([node], "nested_scan_loop",
                         [vi("s0", F, [3]), vi("rows", F, [4, 3]), vi("w", F, [3])],
                         [vi("s_final", F, [3]), vi("hs", F, [4, 3])],
                         initializer=[nh.from_array(np.array([0.1, -0.2, 0.3], np.float32), "bias"),
                                      nh.from_array(np.array(2, np.int64), "trips")])
    rng = np.random.default_rng(2)
    inputs = [rng.standard_normal(s).astype(np.float32) * 0.5 for s in ([3], [4, 3], [3])]
    return h.make_model(graph, opset_imports=[h.make_opsetid("", 16)]), inputs


CASES = [scan_axes_directions, loop_cond_outer_read, loop_early_exit, loop_zero_trips, nested_scan_loop]
NUMPY = {
    scan_axes_directions: scan_axes_directions_numpy,
    # onnx.reference cannot stack zero iterations.
    loop_zero_trips: lambda m, v0: [v0, np.zeros((0, 3), np.float32)],
    # onnx.reference does not resolve a Loop input two scopes out.
    nested_scan_loop: lambda s0, rows, w: nested_scan_loop_numpy(s0, rows, w),
}


def nested_scan_loop_numpy(s0, rows, w):
    bias = np.array([0.1, -0.2, 0.3], np.float32)
    s, hs = s0, []
    for row in rows:
        hval = s + row
        for _ in range(2):
            hval = hval * w + bias
        s = hval
        hs.append(hval)
    return [s, np.stack(hs)]


def main():
    for make in CASES:
        model, inputs = make()
        onnx.checker.check_model(model, full_check=True)
        names = [i.name for i in model.graph.input]
        feeds = dict(zip(names, inputs))
        got = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)
        check = NUMPY.get(make)
        ref = check(*inputs) if check else ReferenceEvaluator(model).run(None, feeds)
        for k, (a, b) in enumerate(zip(got, ref)):
            assert a.shape == b.shape and np.allclose(a, b, atol=1e-6), (make.__name__, k, a, b)
        out = HERE / make.__name__
        data = out / "test_data_set_0"
        data.mkdir(parents=True, exist_ok=True)
        onnx.save(model, str(out / "model.onnx"))
        for k, (name, value) in enumerate(feeds.items()):
            (data / f"input_{k}.pb").write_bytes(nh.from_array(value, name).SerializeToString())
        for k, (vinfo, value) in enumerate(zip(model.graph.output, got)):
            (data / f"output_{k}.pb").write_bytes(nh.from_array(value, vinfo.name).SerializeToString())
        print(f"{make.__name__}: outputs {[v.shape for v in got]}")


if __name__ == "__main__":
    main()
