"""Reference side of the GGUF tests, using the `gguf` Python package (gguf-py).

  gguf_ref.py write OUT_DIR   writes OUT_DIR/ref.gguf holding a tensor of every type the C++
                              reader supports, OUT_DIR/<tensor>.f32 (gguf-py's dequantized
                              values, raw little-endian float32) and OUT_DIR/ref.json
                              ({tensor: {"type", "shape"}} with shapes in numpy order).
  gguf_ref.py read FILE       prints FILE as JSON as gguf-py reads it: version, metadata,
                              and each tensor's type, shape (numpy order) and values.
  gguf_ref.py tensor FILE NAME OUT
                              writes tensor NAME of FILE, dequantized by gguf-py, to OUT
                              (raw little-endian float32).
"""
import json
import sys
from pathlib import Path

import numpy as np
import gguf
from gguf import GGMLQuantizationType as Q

# (name, type, numpy shape); shapes cover 1-3 dimensions and both block sizes.
TENSORS = [
    ("t.f32", Q.F32, (3, 5)),
    ("t.f16", Q.F16, (2, 8)),
    ("t.bf16", Q.BF16, (4, 6)),
    ("t.q8_0", Q.Q8_0, (3, 4, 64)),
    ("t.q4_0", Q.Q4_0, (5, 96)),
    ("t.q4_1", Q.Q4_1, (7, 32)),
    ("t.q5_0", Q.Q5_0, (4, 128)),
    ("t.q5_1", Q.Q5_1, (6, 64)),
    ("t.q4_k", Q.Q4_K, (4, 512)),
    ("t.q6_k", Q.Q6_K, (3, 256)),
]


def random_k_blocks(rng, qtype, n_blocks):
    """Random block bytes of a K type with small positive fp16 scales (gguf-py has no quantizer)."""
    block_size, type_size = gguf.GGML_QUANT_SIZES[qtype]
    raw = rng.integers(0, 256, size=(n_blocks, type_size), dtype=np.uint8)
    scale = lambda: rng.uniform(0.001, 0.05, size=(n_blocks, 1)).astype(np.float16).view(np.uint8)
    if qtype == Q.Q4_K:  # d, dmin first
        raw[:, 0:2] = scale()
        raw[:, 2:4] = scale()
    elif qtype == Q.Q6_K:  # d last
        raw[:, type_size - 2:] = scale()
    return raw


def write(out_dir: Path):
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1234)
    w = gguf.GGUFWriter(out_dir / "ref.gguf", arch="testarch")
    w.add_uint32("test.u32", 123456)
    w.add_int32("test.i32", -42)
    w.add_float32("test.f32", 0.25)
    w.add_bool("test.bool", True)
    w.add_string("test.str", "héllo")
    w.add_array("test.strs", ["a", "bc", ""])
    w.add_array("test.ints", [1, -2, 3])
    manifest = {}
    for name, qtype, shape in TENSORS:
        data = rng.standard_normal(shape).astype(np.float32)
        if qtype == Q.F16:  # special values: largest, smallest subnormal, -0, infinity
            data.flat[:4] = [65504.0, 6e-8, -0.0, np.inf]
        block_size, type_size = gguf.GGML_QUANT_SIZES[qtype]
        if qtype in (Q.Q4_K, Q.Q6_K):
            n_blocks = data.size // block_size
            raw = random_k_blocks(rng, qtype, n_blocks)
            raw = raw.reshape(shape[:-1] + (shape[-1] // block_size * type_size,))
        else:
            raw = gguf.quants.quantize(data, qtype)
        if qtype in (Q.F32, Q.F16):
            w.add_tensor(name, raw)
        else:
            w.add_tensor(name, raw, raw_dtype=qtype)
        ref = gguf.quants.dequantize(raw, qtype).astype("<f4")
        assert ref.shape == shape, (name, ref.shape)
        (out_dir / f"{name}.f32").write_bytes(ref.tobytes())
        manifest[name] = {"type": qtype.name, "shape": list(shape)}
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    (out_dir / "ref.json").write_text(json.dumps(manifest))


def read(path: str):
    r = gguf.GGUFReader(path)
    out = {"version": int(r.fields["GGUF.version"].contents()), "metadata": {}, "tensors": {}}
    for key, field in r.fields.items():
        if key.startswith("GGUF."):
            continue
        out["metadata"][key] = field.contents()
    for t in r.tensors:
        values = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float64)
        out["tensors"][t.name] = {
            "type": t.tensor_type.name,
            "shape": [int(d) for d in reversed(t.shape.tolist())],
            "values": [float(v) for v in values.ravel()],
        }
    print(json.dumps(out))


def tensor(path: str, name: str, out: str):
    r = gguf.GGUFReader(path)
    t = next(t for t in r.tensors if t.name == name)
    Path(out).write_bytes(gguf.quants.dequantize(t.data, t.tensor_type).astype("<f4").tobytes())


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "write":
        write(Path(sys.argv[2]))
    elif len(sys.argv) == 3 and sys.argv[1] == "read":
        read(sys.argv[2])
    elif len(sys.argv) == 5 and sys.argv[1] == "tensor":
        tensor(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        sys.exit(__doc__)
