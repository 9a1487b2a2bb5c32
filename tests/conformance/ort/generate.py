"""Writes the `ort/` conformance cases: attribute combinations of the CNN ops that ONNX's own node
tests leave out (groups in ConvTranspose, per-axis strides, MaxPool Indices in 3-D, Resize modes of
older opsets, Pad with negative pads...), with expected outputs computed by onnxruntime.

Same layout as ONNX's node tests (model.onnx, test_data_set_N/{input,output}_K.pb), so
tests/onnx_conformance.rs runs them from the manifest as `ort/<case>`. Reproduce with:

    python tests/conformance/ort/generate.py   # onnx 1.16, onnxruntime 1.18, numpy 1.26

Weights that a real model would store as initializers are initializers here too, and cases with
constant weights carry two data sets, so a per-node cache of derived weights is exercised on reuse.
"""

import os
import shutil

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
RNG = np.random.default_rng(20261128)


def rand(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def case(name, op, inputs, attrs=None, outputs=("y",), inits=None, opset=17, sets=1):
    """`inputs`: list of (name, array-or-None) fed per data set; `inits`: dict of constants."""
    inits = inits or {}
    node = helper.make_node(op, [n for n, _ in inputs], list(outputs), **(attrs or {}))
    graph_inputs = [
        helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
        for n, a in inputs
        if n and n not in inits
    ]
    graph = helper.make_graph(
        [node],
        name,
        graph_inputs,
        # MaxPool's Indices are int64; every other output here is float. Shapes come from onnxruntime below.
        [helper.make_tensor_value_info(o, TensorProto.INT64 if o == "i" else TensorProto.FLOAT, None) for o in outputs],
        [numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds_list = []
    for s in range(sets):
        feeds = {n: (a if s == 0 else RNG.standard_normal(a.shape).astype(a.dtype) if a.dtype.kind == "f" else a)
                 for n, a in inputs if n and n not in inits}
        feeds_list.append(feeds)
    results = [session.run(None, f) for f in feeds_list]
    del model.graph.output[:]
    for o, r in zip(outputs, results[0]):
        model.graph.output.append(
            helper.make_tensor_value_info(o, helper.np_dtype_to_tensor_dtype(r.dtype), r.shape))
    onnx.checker.check_model(model)
    out = os.path.join(HERE, name)
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    onnx.save(model, os.path.join(out, "model.onnx"))
    for s, (feeds, res) in enumerate(zip(feeds_list, results)):
        d = os.path.join(out, f"test_data_set_{s}")
        os.makedirs(d)
        for k, n in enumerate(n for n, _ in inputs if n and n not in inits):
            with open(os.path.join(d, f"input_{k}.pb"), "wb") as f:
                f.write(numpy_helper.from_array(feeds[n], n).SerializeToString())
        for k, r in enumerate(res):
            with open(os.path.join(d, f"output_{k}.pb"), "wb") as f:
                f.write(numpy_helper.from_array(r, outputs[k]).SerializeToString())


def i64(*v):
    return np.array(v, dtype=np.int64)


def f32(*v):
    return np.array(v, dtype=np.float32)


# --- Conv ---
w = rand(6, 2, 3, 2)
case("conv2d_groups_strides_dilations_asym_pads", "Conv", [("x", rand(2, 4, 9, 11)), ("w", w), ("b", rand(6))],
     dict(group=2, strides=[2, 1], dilations=[1, 2], pads=[1, 0, 2, 1]), inits={"w": w, "b": rand(6)}, sets=2)
case("conv2d_same_lower_unequal_strides", "Conv", [("x", rand(1, 3, 10, 9)), ("w", rand(5, 3, 4, 3))],
     dict(auto_pad="SAME_LOWER", strides=[2, 3]))
case("conv2d_depthwise_multiplier_same_upper", "Conv", [("x", rand(2, 4, 7, 8)), ("w", rand(8, 1, 3, 3)), ("b", rand(8))],
     dict(group=4, auto_pad="SAME_UPPER", strides=[2, 2]))
case("conv1d_valid_strided", "Conv", [("x", rand(3, 2, 17)), ("w", rand(4, 2, 4)), ("b", rand(4))],
     dict(auto_pad="VALID", strides=[3]))
case("conv1d_asym_pads_dilated_groups", "Conv", [("x", rand(2, 6, 15)), ("w", rand(9, 2, 3))],
     dict(group=3, pads=[2, 0], dilations=[3]))
case("conv3d_groups_asym_pads", "Conv", [("x", rand(1, 4, 5, 6, 5)), ("w", rand(4, 2, 3, 3, 2)), ("b", rand(4))],
     dict(group=2, pads=[1, 0, 1, 0, 2, 0], strides=[1, 2, 1]))
case("conv2d_1x1_strided", "Conv", [("x", rand(2, 8, 6, 6)), ("w", rand(4, 8, 1, 1))], dict(strides=[2, 2]))

# --- ConvTranspose ---
w = rand(4, 3, 3, 3)
case("convtranspose2d_groups_strides_dilations", "ConvTranspose", [("x", rand(2, 4, 3, 4)), ("w", w), ("b", rand(6))],
     dict(group=2, strides=[2, 3], pads=[1, 0, 1, 2], output_padding=[1, 0], dilations=[1, 2]),
     inits={"w": w, "b": rand(6)}, sets=2)
case("convtranspose2d_same_lower", "ConvTranspose", [("x", rand(1, 2, 4, 5)), ("w", rand(2, 3, 4, 4))],
     dict(auto_pad="SAME_LOWER", strides=[2, 2]))
case("convtranspose2d_same_upper_odd", "ConvTranspose", [("x", rand(1, 2, 4, 5)), ("w", rand(2, 3, 3, 3))],
     dict(auto_pad="SAME_UPPER", strides=[2, 2]))
case("convtranspose1d_output_shape", "ConvTranspose", [("x", rand(2, 3, 5)), ("w", rand(3, 2, 3)), ("b", rand(2))],
     dict(strides=[2], output_shape=[12]))
case("convtranspose3d_strided_padded", "ConvTranspose", [("x", rand(1, 2, 3, 2, 3)), ("w", rand(2, 2, 2, 3, 2))],
     dict(strides=[2, 1, 2], pads=[1, 1, 0, 0, 1, 0]))
case("convtranspose2d_depthwise", "ConvTranspose", [("x", rand(1, 3, 4, 4)), ("w", rand(3, 1, 3, 3))],
     dict(group=3, strides=[2, 2], pads=[1, 1, 1, 1], output_padding=[1, 1]))

# --- Pooling ---
case("maxpool3d_indices_pads_strides", "MaxPool", [("x", rand(2, 2, 5, 6, 4))],
     dict(kernel_shape=[3, 2, 2], strides=[2, 2, 1], pads=[1, 0, 1, 1, 1, 0]), outputs=("y", "i"), opset=12)
case("maxpool2d_indices_storage_order_ceil", "MaxPool", [("x", rand(1, 3, 7, 6))],
     dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 0, 0], ceil_mode=1, storage_order=1),
     outputs=("y", "i"), opset=12)
case("maxpool1d_ceil_dilated_padded", "MaxPool", [("x", rand(2, 3, 20))],
     dict(kernel_shape=[3], strides=[3], dilations=[2], pads=[1, 2], ceil_mode=1), opset=12)
case("maxpool2d_same_lower_strided", "MaxPool", [("x", rand(1, 2, 9, 8))],
     dict(kernel_shape=[3, 2], strides=[2, 3], auto_pad="SAME_LOWER"), opset=12)
case("avgpool2d_ceil_count_include_pad", "AveragePool", [("x", rand(2, 2, 7, 6))],
     dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1, count_include_pad=1))
case("avgpool2d_ceil_exclude_pad_asym", "AveragePool", [("x", rand(2, 2, 7, 6))],
     dict(kernel_shape=[3, 2], strides=[2, 2], pads=[0, 1, 1, 0], ceil_mode=1))
case("avgpool1d_same_lower_strided", "AveragePool", [("x", rand(2, 3, 11))],
     dict(kernel_shape=[4], strides=[3], auto_pad="SAME_LOWER"))
case("avgpool2d_dilated_pads_count_include_pad", "AveragePool", [("x", rand(1, 2, 9, 9))],
     dict(kernel_shape=[2, 3], strides=[1, 2], dilations=[2, 2], pads=[1, 1, 1, 0], count_include_pad=1), opset=19)
case("globalaveragepool_3d", "GlobalAveragePool", [("x", rand(2, 3, 4, 3, 5))])
case("globalmaxpool_1d", "GlobalMaxPool", [("x", rand(2, 3, 7))])

# --- BatchNormalization, LRN ---
scale, bias, mean, var = rand(3), rand(3), rand(3), np.abs(rand(3)) + 0.1
case("batchnorm_opset9_3d_input", "BatchNormalization",
     [("x", rand(2, 3, 7)), ("s", scale), ("b", bias), ("m", mean), ("v", var)], dict(epsilon=1e-3),
     inits={"s": scale, "b": bias, "m": mean, "v": var}, opset=9, sets=2)
case("batchnorm_opset14_5d_input", "BatchNormalization",
     [("x", rand(1, 3, 2, 3, 4)), ("s", scale), ("b", bias), ("m", mean), ("v", var)], opset=14)
case("lrn_size5_wider_than_channels", "LRN", [("x", rand(2, 3, 3, 3))], dict(size=5, alpha=1e-2, beta=0.6, bias=1.5))

# --- Gemm, MatMul ---
case("gemm_trans_both_column_bias", "Gemm", [("a", rand(5, 3)), ("b", rand(4, 5)), ("c", rand(3, 1))],
     dict(transA=1, transB=1, alpha=0.7, beta=-1.3), opset=13)
case("gemm_row_bias_beta_zero", "Gemm", [("a", rand(3, 5)), ("b", rand(5, 4)), ("c", rand(4))], dict(beta=0.0), opset=13)
case("matmul_broadcast_batch", "MatMul", [("a", rand(2, 1, 3, 4)), ("b", rand(5, 4, 2))])
case("matmul_1d_by_3d", "MatMul", [("a", rand(4)), ("b", rand(2, 4, 3))])
case("matmul_3d_by_1d", "MatMul", [("a", rand(2, 3, 4)), ("b", rand(4))])
case("matmul_1d_by_1d", "MatMul", [("a", rand(6)), ("b", rand(6))])

# --- Resize and Upsample ---
x44 = rand(1, 2, 4, 5)
case("resize11_nearest_tf_half_pixel_for_nn_scales", "Resize",
     [("x", x44), ("roi", f32()), ("scales", f32(1, 1, 1.5, 2.5))],
     dict(mode="nearest", coordinate_transformation_mode="tf_half_pixel_for_nn"), inits={"roi": f32(), "scales": f32(1, 1, 1.5, 2.5)}, opset=11)
case("resize11_linear_sizes_empty_scales", "Resize",
     [("x", x44), ("roi", f32()), ("scales", f32()), ("sizes", i64(1, 2, 7, 3))],
     dict(mode="linear"), inits={"roi": f32(), "scales": f32(), "sizes": i64(1, 2, 7, 3)}, opset=11)
case("resize13_linear_align_corners_sizes", "Resize",
     [("x", x44), ("", None), ("", None), ("sizes", i64(1, 2, 3, 8))],
     dict(mode="linear", coordinate_transformation_mode="align_corners"), inits={"sizes": i64(1, 2, 3, 8)}, opset=13)
case("resize13_linear_pytorch_half_pixel_scales", "Resize",
     [("x", x44), ("", None), ("scales", f32(1, 1, 2, 0.5))],
     dict(mode="linear", coordinate_transformation_mode="pytorch_half_pixel"), inits={"scales": f32(1, 1, 2, 0.5)}, opset=13)
case("resize13_linear_asymmetric_scales", "Resize",
     [("x", x44), ("", None), ("scales", f32(1, 1, 1.75, 1.4))],
     dict(mode="linear", coordinate_transformation_mode="asymmetric"), inits={"scales": f32(1, 1, 1.75, 1.4)}, opset=13)
case("resize13_nearest_ceil_downsample", "Resize",
     [("x", rand(1, 1, 9, 7)), ("", None), ("scales", f32(1, 1, 0.5, 0.6))],
     dict(mode="nearest", nearest_mode="ceil"), inits={"scales": f32(1, 1, 0.5, 0.6)}, opset=13)
case("resize13_nearest_round_prefer_ceil_align_corners", "Resize",
     [("x", x44), ("", None), ("", None), ("sizes", i64(1, 2, 7, 9))],
     dict(mode="nearest", nearest_mode="round_prefer_ceil", coordinate_transformation_mode="align_corners"),
     inits={"sizes": i64(1, 2, 7, 9)}, opset=13)
case("resize13_cubic_exclude_outside_sizes", "Resize",
     [("x", x44), ("", None), ("", None), ("sizes", i64(1, 2, 6, 3))],
     dict(mode="cubic", exclude_outside=1, cubic_coeff_a=-0.5), inits={"sizes": i64(1, 2, 6, 3)}, opset=13)
case("resize18_linear_antialias_axes", "Resize",
     [("x", rand(1, 2, 9, 10)), ("", None), ("scales", f32(0.6, 0.35))],
     dict(mode="linear", antialias=1, axes=[3, 2]), inits={"scales": f32(0.6, 0.35)}, opset=18)
case("resize19_nearest_not_larger", "Resize",
     [("x", x44), ("", None), ("", None), ("sizes", i64(1, 2, 3, 3))],
     dict(mode="nearest", keep_aspect_ratio_policy="not_larger"), inits={"sizes": i64(1, 2, 3, 3)}, opset=19)
case("resize10_nearest_downsample", "Resize", [("x", rand(1, 1, 6, 8)), ("scales", f32(1, 1, 0.5, 0.75))],
     dict(mode="nearest"), inits={"scales": f32(1, 1, 0.5, 0.75)}, opset=10)
case("upsample9_linear", "Upsample", [("x", x44), ("scales", f32(1, 1, 2, 1.5))],
     dict(mode="linear"), inits={"scales": f32(1, 1, 2, 1.5)}, opset=9)

# --- Pad ---
x = rand(2, 3, 4, 5)
case("pad11_constant_value_negative_pads", "Pad", [("x", x), ("pads", i64(0, -1, 2, 1, 1, 0, -1, 3)), ("v", f32(2.5))],
     dict(mode="constant"), inits={"pads": i64(0, -1, 2, 1, 1, 0, -1, 3), "v": f32(2.5)}, opset=11)
case("pad11_reflect", "Pad", [("x", x), ("pads", i64(0, 0, 3, 2, 0, 0, 1, 4))], dict(mode="reflect"),
     inits={"pads": i64(0, 0, 3, 2, 0, 0, 1, 4)}, opset=11)
case("pad13_edge_mixed_crop", "Pad", [("x", x), ("pads", i64(0, 1, -1, 2, 1, 0, 2, -2))], dict(mode="edge"),
     inits={"pads": i64(0, 1, -1, 2, 1, 0, 2, -2)}, opset=13)
case("pad18_reflect_negative_axes", "Pad", [("x", x), ("pads", i64(1, 2, 3, 0)), ("", None), ("axes", i64(-1, 2))],
     dict(mode="reflect"), inits={"pads": i64(1, 2, 3, 0), "axes": i64(-1, 2)}, opset=18)
case("pad19_wrap_float", "Pad", [("x", x), ("pads", i64(0, 0, 2, 3, 0, 0, 3, 2))], dict(mode="wrap"),
     inits={"pads": i64(0, 0, 2, 3, 0, 0, 3, 2)}, opset=19)
case("pad2_attribute_constant", "Pad", [("x", x)], dict(mode="constant", pads=[0, 1, 1, 0, 0, 2, 0, 1], value=-0.5), opset=2)
print("done")
