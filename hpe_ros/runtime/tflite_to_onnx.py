"""TFLite -> ONNX for MediaPipe's BlazePose networks, without TensorFlow.

The flatbuffer is read with the `tflite` schema bindings; constants that the graph unpacks at load time
(DENSIFY of sparse weights, DEQUANTIZE of float16 weights) are unpacked here in numpy. Activations stay
NCHW inside the ONNX graph: the input is (B, 3, H, W) like every runner's, the batch dimension is
dynamic, and outputs keep the TFLite layout ((B, H, W, C) heatmaps, (B, N, K) detector rows) so both
runtimes return the same arrays. Only the ops that BlazePose's detector and landmark networks use are
handled (`SUPPORTED_OPS`); anything else is refused by name.

`converted_onnx(tflite_path)` converts once into the model cache, keyed by the source's sha256 and the
converter's version.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hpe_ros.io.atomic import atomic_path
from hpe_ros.runtime.cache import model_cache_dir, sha256_file

OPSET = 17
CONVERTER_VERSION = 1                                  # part of the cache key: bump when the output changes
SAME, VALID = 0, 1                                     # tflite.Padding
NCHW_AXIS = {0: 0, 1: 2, 2: 3, 3: 1}                   # NHWC axis -> NCHW axis
ACTIVATIONS = {0: None, 1: ("Relu", None), 2: ("Clip", (-1.0, 1.0)), 3: ("Clip", (0.0, 6.0))}


@dataclass
class TfliteTensor:
    name: str
    shape: tuple
    dtype: np.dtype
    data: np.ndarray | None = None                     # constants only (densified, float32 if float)
    sparsity: object = None


@dataclass
class TfliteOp:
    kind: str                                          # builtin name, e.g. "CONV_2D"
    inputs: list[int]
    outputs: list[int]
    options: object = None


@dataclass
class TfliteGraph:
    tensors: list[TfliteTensor]
    ops: list[TfliteOp]
    inputs: list[int]
    outputs: list[int]


def _tflite():
    try:
        import tflite
    except ImportError as exc:
        raise ImportError(f"reading .tflite files needs the `tflite` schema package ({exc}); "
                          "pip install tflite, or pip install 'hpe_ros[blazepose]'") from exc
    return tflite


def _enum_names(enum_cls) -> dict[int, str]:
    return {v: k for k, v in vars(enum_cls).items() if not k.startswith("_")}


def _numpy_dtype(tflite, type_code: int) -> np.dtype:
    names = _enum_names(tflite.TensorType)
    table = {"FLOAT32": np.float32, "FLOAT16": np.float16, "INT32": np.int32, "INT64": np.int64,
             "UINT8": np.uint8, "INT8": np.int8, "INT16": np.int16}
    name = names.get(type_code, str(type_code))
    if name not in table:
        raise ValueError(f"tflite tensor type {name} is not supported")
    return np.dtype(table[name])


def _options(tflite, op, kind: str):
    classes = {"CONV_2D": "Conv2DOptions", "DEPTHWISE_CONV_2D": "DepthwiseConv2DOptions",
               "ADD": "AddOptions", "RESIZE_BILINEAR": "ResizeBilinearOptions", "MAX_POOL_2D": "Pool2DOptions",
               "CONCATENATION": "ConcatenationOptions", "DEPTH_TO_SPACE": "DepthToSpaceOptions"}
    if kind not in classes or op.BuiltinOptions() is None:
        return None
    table = op.BuiltinOptions()
    opts = getattr(tflite, classes[kind])()
    opts.Init(table.Bytes, table.Pos)
    return opts


def read_tflite(path: str | Path) -> TfliteGraph:
    """Parse a single-subgraph .tflite file into tensors (constants as numpy) and ops."""
    tflite = _tflite()
    buf = Path(path).read_bytes()
    model = tflite.Model.GetRootAsModel(buf, 0)
    if model.SubgraphsLength() != 1:
        raise ValueError(f"{path}: expected one subgraph, found {model.SubgraphsLength()}")
    graph = model.Subgraphs(0)
    op_names = _enum_names(tflite.BuiltinOperator)
    tensors = []
    for i in range(graph.TensorsLength()):
        t = graph.Tensors(i)
        dtype = _numpy_dtype(tflite, t.Type())
        shape = tuple(int(d) for d in t.ShapeAsNumpy()) if t.ShapeLength() else ()
        raw = model.Buffers(t.Buffer())
        data = np.frombuffer(raw.DataAsNumpy().tobytes(), dtype) if raw.DataLength() else None
        sparse = t.Sparsity()
        if data is not None and sparse is None:
            data = data.reshape(shape)
        tensors.append(TfliteTensor(t.Name().decode(), shape, dtype, data, sparse))
    ops = []
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        code = model.OperatorCodes(op.OpcodeIndex())
        kind = op_names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "?")
        if kind == "CUSTOM":
            kind = "CUSTOM:" + code.CustomCode().decode()
        ops.append(TfliteOp(kind, [int(j) for j in op.InputsAsNumpy()], [int(j) for j in op.OutputsAsNumpy()],
                            _options(tflite, op, kind)))
    return TfliteGraph(tensors, ops, [int(j) for j in graph.InputsAsNumpy()],
                       [int(j) for j in graph.OutputsAsNumpy()])


def _index_vector(tflite, metadata, which: str) -> np.ndarray:
    """A dimension's CSR segments or indices (a flatbuffer union of int32 / uint16 / uint8 vectors)."""
    kinds = {1: (tflite.Int32Vector, np.int32), 2: (tflite.Uint16Vector, np.uint16),
             3: (tflite.Uint8Vector, np.uint8)}
    kind = getattr(metadata, f"Array{which}Type")()
    if kind not in kinds:
        raise ValueError(f"sparse tensor: unsupported {which.lower()} vector type {kind}")
    cls, _ = kinds[kind]
    table = getattr(metadata, f"Array{which}")()
    vec = cls()
    vec.Init(table.Bytes, table.Pos)
    return np.asarray(vec.ValuesAsNumpy(), dtype=np.int64)


def densify(values: np.ndarray, shape: tuple, sparsity) -> np.ndarray:
    """A TFLite sparse tensor as a dense array (shape), as the DENSIFY op would compute it.

    values: the stored non-zeros (1-D). One level per dim, in `traversal_order`: DENSE levels enumerate,
    SPARSE_CSR levels read segments / indices. Block sparsity (`block_map`, unused by BlazePose) is refused.
    """
    tflite = _tflite()
    if sparsity.BlockMapLength():
        raise ValueError("block-sparse tensors are not supported (BlazePose's weights have none)")
    positions = np.zeros(1, dtype=np.int64)            # where each entry continues in the next level's storage
    coords = np.zeros((1, 0), dtype=np.int64)          # one column per level so far
    for level in range(sparsity.DimMetadataLength()):
        meta = sparsity.DimMetadata(level)
        if meta.Format() == tflite.DimensionType.DENSE:
            size = int(meta.DenseSize())
            idx = np.tile(np.arange(size), len(positions))
            positions = np.repeat(positions, size) * size + idx
            coords = np.repeat(coords, size, axis=0)
        else:
            segments = _index_vector(tflite, meta, "Segments")
            indices = _index_vector(tflite, meta, "Indices")
            starts, counts = segments[positions], segments[positions + 1] - segments[positions]
            positions = (np.concatenate([np.arange(s, s + c) for s, c in zip(starts, counts)]) if counts.sum()
                         else np.zeros(0, dtype=np.int64))
            idx = indices[positions]
            coords = np.repeat(coords, counts, axis=0)
        coords = np.concatenate([coords, idx[:, None]], axis=1)
    dims = np.asarray(sparsity.TraversalOrderAsNumpy(), dtype=np.int64)
    dense = np.zeros(shape, dtype=values.dtype)
    dense[tuple(coords[:, np.argsort(dims)].T)] = values[positions]
    return dense


def fold_constants(graph: TfliteGraph) -> list[TfliteOp]:
    """Unpack sparse / float16 constants (DENSIFY, DEQUANTIZE of a constant) in numpy; returns the rest."""
    for t in graph.tensors:
        if t.data is not None and t.sparsity is not None:
            t.data, t.sparsity = densify(t.data, t.shape, t.sparsity), None
    remaining = []
    for op in graph.ops:
        src = graph.tensors[op.inputs[0]] if op.inputs else None
        if op.kind in ("DENSIFY", "DEQUANTIZE") and src is not None and src.data is not None:
            out = graph.tensors[op.outputs[0]]
            out.data = src.data.astype(np.float32) if op.kind == "DEQUANTIZE" else src.data
            continue
        remaining.append(op)
    return remaining


class _OnnxBuilder:
    """Collects ONNX nodes and initializers; activations are NCHW, names are the TFLite tensor names."""

    def __init__(self, graph: TfliteGraph):
        from onnx import helper, numpy_helper

        self.helper, self.numpy_helper = helper, numpy_helper
        self.graph = graph
        self.nodes: list = []
        self.initializers: list = []
        self.names = [f"t{i}_{t.name}" for i, t in enumerate(graph.tensors)]
        self._count = 0

    def const(self, array: np.ndarray, hint: str) -> str:
        self._count += 1
        name = f"c{self._count}_{hint}"
        self.initializers.append(self.numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def tensor(self, index: int) -> str:
        """The ONNX name of TFLite tensor `index` (constants become initializers on first use)."""
        t = self.graph.tensors[index]
        if t.data is not None and not any(i.name == self.names[index] for i in self.initializers):
            data = t.data.astype(np.float32) if t.data.dtype == np.float16 else t.data
            self.initializers.append(self.numpy_helper.from_array(np.ascontiguousarray(data), self.names[index]))
        return self.names[index]

    def node(self, op_type: str, inputs: list[str], output: str | None = None, **attrs) -> str:
        self._count += 1
        output = output or f"n{self._count}_{op_type}"
        self.nodes.append(self.helper.make_node(op_type, inputs, [output], name=f"{op_type}_{self._count}", **attrs))
        return output

    def activate(self, x: str, fused: int, output: str) -> str:
        if fused not in ACTIVATIONS:
            raise ValueError(f"fused activation {fused} is not supported")
        act = ACTIVATIONS[fused]
        if act is None:
            return self.node("Identity", [x], output)
        if act[0] == "Relu":
            return self.node("Relu", [x], output)
        lo, hi = act[1]
        return self.node("Clip", [x, self.const(np.float32(lo), "lo"), self.const(np.float32(hi), "hi")], output)


def _same_pads(in_hw: tuple, kernel: tuple, stride: tuple, dilation: tuple) -> list[int]:
    """TF 'SAME' padding as ONNX pads [top, left, bottom, right] (the odd pixel goes at the end)."""
    begin, end = [], []
    for size, k, s, d in zip(in_hw, kernel, stride, dilation):
        out = -(-size // s)
        total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
        begin.append(total // 2)
        end.append(total - total // 2)
    return begin + end


def _conv(b: _OnnxBuilder, op: TfliteOp, depthwise: bool) -> None:
    g, o = b.graph, op.options
    x, w = g.tensors[op.inputs[0]], g.tensors[op.inputs[1]]
    if w.data is None:
        raise ValueError(f"{op.kind}: weights must be constant")
    if depthwise:                                   # (1, KH, KW, C*M) -> (C*M, 1, KH, KW), one group per input channel
        weight, group = w.data.transpose(3, 0, 1, 2), x.shape[3]
    else:                                           # (O, KH, KW, I) -> (O, I, KH, KW)
        weight, group = w.data.transpose(0, 3, 1, 2), 1
    kernel, stride = weight.shape[2:], (o.StrideH(), o.StrideW())
    dilation = (o.DilationHFactor(), o.DilationWFactor())
    pads = _same_pads(x.shape[1:3], kernel, stride, dilation) if o.Padding() == SAME else [0, 0, 0, 0]
    inputs = [b.tensor(op.inputs[0]), b.const(weight.astype(np.float32), "w")]
    if len(op.inputs) > 2 and op.inputs[2] >= 0:
        inputs.append(b.const(g.tensors[op.inputs[2]].data.astype(np.float32), "b"))
    y = b.node("Conv", inputs, kernel_shape=list(kernel), strides=list(stride), dilations=list(dilation),
               pads=pads, group=int(group))
    b.activate(y, o.FusedActivationFunction(), b.names[op.outputs[0]])


def _add(b: _OnnxBuilder, op: TfliteOp) -> None:
    ranks = {len(b.graph.tensors[i].shape) for i in op.inputs}
    if ranks != {4} or any(b.graph.tensors[i].data is not None for i in op.inputs):
        raise ValueError("ADD: only the sum of two NHWC activations is supported")
    y = b.node("Add", [b.tensor(i) for i in op.inputs])
    b.activate(y, op.options.FusedActivationFunction(), b.names[op.outputs[0]])


def _pad(b: _OnnxBuilder, op: TfliteOp) -> None:
    pads_nhwc = b.graph.tensors[op.inputs[1]].data.reshape(-1, 2)
    if pads_nhwc.shape[0] != 4:
        raise ValueError("PAD: only 4-D activations are supported")
    nchw = pads_nhwc[[0, 3, 1, 2]]
    onnx_pads = np.concatenate([nchw[:, 0], nchw[:, 1]]).astype(np.int64)
    b.node("Pad", [b.tensor(op.inputs[0]), b.const(onnx_pads, "pads")], b.names[op.outputs[0]], mode="constant")


def _max_pool(b: _OnnxBuilder, op: TfliteOp) -> None:
    o, x = op.options, b.graph.tensors[op.inputs[0]]
    kernel, stride = (o.FilterHeight(), o.FilterWidth()), (o.StrideH(), o.StrideW())
    pads = _same_pads(x.shape[1:3], kernel, stride, (1, 1)) if o.Padding() == SAME else [0, 0, 0, 0]
    y = b.node("MaxPool", [b.tensor(op.inputs[0])], kernel_shape=list(kernel), strides=list(stride), pads=pads)
    b.activate(y, o.FusedActivationFunction(), b.names[op.outputs[0]])


def _resize_bilinear(b: _OnnxBuilder, op: TfliteOp) -> None:
    o, x = op.options, b.graph.tensors[op.inputs[0]]
    out_hw = b.graph.tensors[op.inputs[1]].data.astype(np.int64)
    mode = "align_corners" if o.AlignCorners() else ("half_pixel" if o.HalfPixelCenters() else "asymmetric")
    scales = np.array([1.0, 1.0, out_hw[0] / x.shape[1], out_hw[1] / x.shape[2]], dtype=np.float32)
    b.node("Resize", [b.tensor(op.inputs[0]), "", b.const(scales, "scales")], b.names[op.outputs[0]],
           mode="linear", coordinate_transformation_mode=mode)


def _depth_to_space(b: _OnnxBuilder, op: TfliteOp) -> None:
    # TF's NHWC depth_to_space reads channels as (block_row, block_col, C): ONNX's DCR mode on NCHW.
    b.node("DepthToSpace", [b.tensor(op.inputs[0])], b.names[op.outputs[0]],
           blocksize=int(op.options.BlockSize()), mode="DCR")


def _reshape(b: _OnnxBuilder, op: TfliteOp) -> None:
    """NHWC semantics: a 4-D input goes back to NHWC first; the leading (batch) dim stays dynamic."""
    src, dst = b.graph.tensors[op.inputs[0]], b.graph.tensors[op.outputs[0]]
    x = b.tensor(op.inputs[0])
    if len(src.shape) == 4:
        x = b.node("Transpose", [x], perm=[0, 2, 3, 1])
    target = np.array((-1,) + tuple(dst.shape[1:]), dtype=np.int64)
    out = b.node("Reshape", [x, b.const(target, "shape")])
    if len(dst.shape) == 4:
        out = b.node("Transpose", [out], perm=[0, 3, 1, 2])
    b.node("Identity", [out], b.names[op.outputs[0]])


def _concat(b: _OnnxBuilder, op: TfliteOp) -> None:
    rank = len(b.graph.tensors[op.outputs[0]].shape)
    axis = op.options.Axis() % rank
    axis = NCHW_AXIS[axis] if rank == 4 else axis
    y = b.node("Concat", [b.tensor(i) for i in op.inputs], axis=int(axis))
    b.activate(y, op.options.FusedActivationFunction(), b.names[op.outputs[0]])


def _logistic(b: _OnnxBuilder, op: TfliteOp) -> None:
    b.node("Sigmoid", [b.tensor(op.inputs[0])], b.names[op.outputs[0]])


CONVERTERS = {
    "CONV_2D": lambda b, op: _conv(b, op, depthwise=False),
    "DEPTHWISE_CONV_2D": lambda b, op: _conv(b, op, depthwise=True),
    "ADD": _add, "PAD": _pad, "MAX_POOL_2D": _max_pool, "RESIZE_BILINEAR": _resize_bilinear,
    "DEPTH_TO_SPACE": _depth_to_space, "RESHAPE": _reshape, "CONCATENATION": _concat, "LOGISTIC": _logistic,
}
SUPPORTED_OPS = tuple(CONVERTERS) + ("DENSIFY", "DEQUANTIZE")


def _prune(nodes: list, initializers: list, outputs: list[str]) -> tuple[list, list]:
    """Only the nodes (in order) and initializers that `outputs` depend on."""
    needed, kept = set(outputs), []
    for node in reversed(nodes):
        if needed.intersection(node.output):
            kept.append(node)
            needed.update(node.input)
    return kept[::-1], [i for i in initializers if i.name in needed]


def convert_tflite(path: str | Path, outputs: tuple[str, ...] | None = None):
    """An onnx.ModelProto equivalent to the .tflite at `path`: input (B, 3, H, W), outputs in TFLite layout.

    outputs: the TFLite output names to keep (None: all); the layers only the others need are left out.
    """
    from onnx import TensorProto, checker, helper

    graph = read_tflite(path)
    ops = fold_constants(graph)
    unsupported = sorted({op.kind for op in ops if op.kind not in CONVERTERS})
    if unsupported:
        raise ValueError(f"{path}: unsupported TFLite ops {', '.join(unsupported)} "
                         f"(this converter handles {', '.join(SUPPORTED_OPS)})")
    if len(graph.inputs) != 1 or len(graph.tensors[graph.inputs[0]].shape) != 4:
        raise ValueError(f"{path}: expected one NHWC image input")
    b = _OnnxBuilder(graph)
    for op in ops:
        CONVERTERS[op.kind](b, op)
    inp = graph.tensors[graph.inputs[0]]
    _, h, w, c = inp.shape
    onnx_inputs = [helper.make_tensor_value_info(b.names[graph.inputs[0]], TensorProto.FLOAT, ["B", c, h, w])]
    names = [graph.tensors[i].name for i in graph.outputs]
    unknown = sorted(set(outputs or ()) - set(names))
    if unknown:
        raise ValueError(f"{path}: no output(s) {unknown}; the model's are {names}")
    onnx_outputs = []
    for index in graph.outputs:
        t = graph.tensors[index]
        name = t.name
        if outputs is not None and name not in outputs:
            continue
        src = b.names[index]
        if len(t.shape) == 4:                       # back to the TFLite (B, H, W, C) layout
            src = b.node("Transpose", [src], perm=[0, 2, 3, 1])
        b.node("Identity", [src], name)
        onnx_outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, ["B", *t.shape[1:]]))
    nodes, initializers = _prune(b.nodes, b.initializers, [o.name for o in onnx_outputs])
    onnx_graph = helper.make_graph(nodes, Path(path).stem, onnx_inputs, onnx_outputs, initializers)
    model = helper.make_model(onnx_graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="hpe_ros.runtime.tflite_to_onnx")
    model.ir_version = 8
    checker.check_model(model)
    return model


def blazepose_cache_dir() -> Path:
    """Converted BlazePose networks: <model cache dir>/blazepose (not created here)."""
    return model_cache_dir() / "blazepose"


def converted_onnx(tflite_path: str | Path, cache_dir: str | Path | None = None,
                   outputs: tuple[str, ...] | None = None) -> Path:
    """The ONNX conversion of `tflite_path`, converted once and kept as <cache>/<stem>-<sha256[:16]>-v<N>.onnx
    (N: CONVERTER_VERSION, so a changed converter never serves an old conversion).

    cache_dir: default `blazepose_cache_dir()`. outputs: keep only these outputs (see convert_tflite; the
    file name then ends in -<names>.onnx). Written atomically, so concurrent callers never see a
    half-written file. FileNotFoundError names a missing source.
    """
    import onnx

    src = Path(tflite_path).expanduser()
    if not src.is_file():
        raise FileNotFoundError(f"tflite model {str(src)!r} not found")
    folder = Path(cache_dir).expanduser() if cache_dir else blazepose_cache_dir()
    subset = "-" + "+".join(outputs) if outputs is not None else ""
    target = folder / f"{src.stem}-{sha256_file(src)[:16]}-v{CONVERTER_VERSION}{subset}.onnx"
    if target.is_file():
        return target
    model = convert_tflite(src, outputs)
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as tmp:
        onnx.save(model, str(tmp))
    return target
