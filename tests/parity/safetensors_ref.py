"""Reference side of the safetensors tests, using the `safetensors` Python package.

  safetensors_ref.py shards OUT_DIR   writes a model sharded in two files plus
                                      model.safetensors.index.json into OUT_DIR, and
                                      OUT_DIR/ref.json ({tensor: {"dtype", "shape", "values"}}).
  safetensors_ref.py read FILE        prints FILE as JSON as safetensors reads it: metadata
                                      and each tensor's dtype, shape and values (as float).
"""
import json
import sys
from pathlib import Path

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

SHARDS = {
    "model-00001-of-00002.safetensors": {
        "embed.weight": np.arange(12, dtype=np.float32).reshape(3, 4) / 8,
        "layers.0.scale": np.array([1.5, -2.0, 65504.0], dtype=np.float16),
    },
    "model-00002-of-00002.safetensors": {
        "layers.1.weight": np.linspace(-1, 1, 24, dtype=np.float32).reshape(2, 3, 4),
        "head.bias": np.array([0.25], dtype=np.float16),
        "empty": np.zeros((0, 3), dtype=np.float32),
    },
}


def shards(out_dir: Path):
    out_dir.mkdir(parents=True, exist_ok=True)
    weight_map, ref, total = {}, {}, 0
    for i, (file, tensors) in enumerate(SHARDS.items()):
        save_file(tensors, str(out_dir / file), metadata={"format": "np", f"shard{i}": file})
        for name, a in tensors.items():
            weight_map[name] = file
            total += a.nbytes
            ref[name] = {"dtype": {np.float32: "F32", np.float16: "F16"}[a.dtype.type],
                         "shape": list(a.shape), "values": [float(v) for v in a.ravel()]}
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (out_dir / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    (out_dir / "ref.json").write_text(json.dumps(ref))


def read(path: str):
    import torch  # BF16 has no numpy dtype
    out = {"tensors": {}}
    with safe_open(path, framework="pt") as f:
        out["metadata"] = f.metadata() or {}
        for name in f.keys():
            t = f.get_tensor(name)
            out["tensors"][name] = {
                "dtype": {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16"}[t.dtype],
                "shape": list(t.shape),
                "values": t.to(torch.float64).ravel().tolist(),
            }
    print(json.dumps(out))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "shards":
        shards(Path(sys.argv[2]))
    elif len(sys.argv) == 3 and sys.argv[1] == "read":
        read(sys.argv[2])
    else:
        sys.exit(__doc__)
