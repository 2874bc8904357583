"""Checkpoints for TorchHooks' streaming loader, written by an independent writer: this script writes the safetensors
format byte by byte (8-byte little-endian header length, JSON header, raw little-endian data — the layout documented
by huggingface/safetensors), not with the safetensors library, and Accelerate's offload folder from its documented
layout (accelerate/utils/offload.py: index.json {name: {dtype, shape}} + one raw {name}.dat per tensor, bfloat16 as
int16). The values come from PyTorch (Debian's python3-torch), and expected.json records them, plus the output of the
same model run by PyTorch, so the C# tests compare what they load against PyTorch.

Run: /usr/bin/python3 tests/TorchHooks.Tests/Goldens/bigmodels/make_checkpoints.py
Writes, next to this script:
  small.safetensors                      the model's state dict, one file (data not in key order)
  sharded/model.safetensors.index.json   the same split over two shards (Hugging Face's sharded layout)
  sharded/model-0000{1,2}-of-00002.safetensors
  dtypes.safetensors                     one tensor per supported dtype (bf16, f16, f64, i64, i32, i16, i8, u8, bool)
  offload/index.json + offload/*.dat     the model's state dict as Accelerate's offload folder
  expected.json                          every tensor's dtype, shape and values; the model's input and output
"""
import json
import os
import struct

import torch
import torch.nn as nn

HERE = os.path.dirname(os.path.abspath(__file__))

CODES = {torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.int64: "I64",
         torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8", torch.bool: "BOOL"}
NUMPY_NAMES = {torch.float32: "float32", torch.int64: "int64", torch.bfloat16: "bfloat16", torch.float16: "float16"}


def raw(t):
    """The tensor's bytes, little-endian, C order."""
    t = t.contiguous()
    if t.dtype == torch.bfloat16:
        t = t.view(torch.int16)
    return t.numpy().tobytes()


def write_safetensors(path, tensors, order, metadata=None):
    header, offset, blobs = {}, 0, []
    if metadata is not None:
        header["__metadata__"] = metadata
    for name in order:
        data = raw(tensors[name])
        header[name] = {"dtype": CODES[tensors[name].dtype], "shape": list(tensors[name].shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)          # the reference writer pads the header to 8 bytes
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


def model():
    torch.manual_seed(0)
    m = nn.Sequential()
    m.add_module("fc1", nn.Linear(4, 3))
    m.add_module("norm", nn.LayerNorm(3))
    m.add_module("bn", nn.BatchNorm1d(3))
    m.add_module("fc2", nn.Linear(3, 2))
    with torch.no_grad():
        m.norm.weight.copy_(torch.tensor([1.5, -0.5, 2.0]))
        m.norm.bias.copy_(torch.tensor([0.1, 0.2, -0.3]))
        m.bn.running_mean.copy_(torch.tensor([0.25, -0.5, 0.75]))
        m.bn.running_var.copy_(torch.tensor([1.5, 0.5, 2.0]))
        m.bn.num_batches_tracked.fill_(7)
    return m.eval()


def describe(t):
    v = t.float() if t.dtype in (torch.bfloat16, torch.float16) else t
    if t.dtype == torch.bool:
        v = t.to(torch.int64)
    return {"dtype": CODES[t.dtype], "shape": list(t.shape), "values": v.reshape(-1).tolist()}


def main():
    m = model()
    sd = {k: v.detach().clone() for k, v in m.state_dict().items()}
    x = torch.sin(torch.arange(8, dtype=torch.float32) * 0.7 + 0.3).reshape(2, 4)
    with torch.no_grad():
        y = m(x)

    keys = list(sd.keys())
    order = keys[::-1]                                  # data order differs from key order on purpose
    write_safetensors(os.path.join(HERE, "small.safetensors"), sd, order, {"format": "pt", "writer": "make_checkpoints.py"})

    shard_dir = os.path.join(HERE, "sharded")
    os.makedirs(shard_dir, exist_ok=True)
    first = [k for k in keys if k.startswith("fc1.") or k.startswith("norm.")]
    second = [k for k in keys if k not in first]
    names = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    write_safetensors(os.path.join(shard_dir, names[0]), sd, first, {"format": "pt"})
    write_safetensors(os.path.join(shard_dir, names[1]), sd, second, {"format": "pt"})
    total = sum(len(raw(sd[k])) for k in keys)
    with open(os.path.join(shard_dir, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total},
                   "weight_map": {k: names[0] if k in first else names[1] for k in keys}}, f, indent=2)

    ramp = torch.sin(torch.arange(6, dtype=torch.float64) * 1.3 - 0.2).reshape(2, 3)
    dt = {
        "bf16": ramp.to(torch.bfloat16), "f16": ramp.to(torch.float16), "f64": ramp,
        "i64": torch.tensor([[-3, 2**40, 5], [0, -1, 7]], dtype=torch.int64),
        "i32": torch.tensor([-7, 2**30, 9], dtype=torch.int32), "i16": torch.tensor([-300, 12], dtype=torch.int16),
        "i8": torch.tensor([-128, 127, 0], dtype=torch.int8), "u8": torch.tensor([0, 255, 17], dtype=torch.uint8),
        "bool": torch.tensor([True, False, True]), "scalar": torch.tensor(2.5, dtype=torch.float32),
        "empty": torch.zeros(0, 3, dtype=torch.float32),
    }
    write_safetensors(os.path.join(HERE, "dtypes.safetensors"), dt, list(dt.keys()))

    off = os.path.join(HERE, "offload")
    os.makedirs(off, exist_ok=True)
    index = {}
    for k, v in sd.items():
        index[k] = {"dtype": NUMPY_NAMES[v.dtype], "shape": list(v.shape)}
        data = raw(v if v.dim() > 0 else v.reshape(1))  # Accelerate stores a 0-d tensor as shape [1]
        with open(os.path.join(off, k + ".dat"), "wb") as f:
            f.write(data)
    with open(os.path.join(off, "index.json"), "w") as f:
        json.dump(index, f, indent=2)

    # load_state_dict into a model that lacks fc2 and has an extra Linear: PyTorch's missing/unexpected keys and
    # strict message, and the order its state-dict hooks run in (1.13: the load pre-hook and state-dict post-hook
    # are registered with the private _register_* functions, the load post-hook with the public one).
    other = nn.Sequential()
    other.add_module("fc1", nn.Linear(4, 3))
    other.add_module("norm", nn.LayerNorm(3))
    other.add_module("bn", nn.BatchNorm1d(3))
    other.add_module("extra", nn.Linear(2, 2))
    events = []
    for path, mod in other.named_modules():
        def pre(module, state_dict, prefix, local_metadata, strict, missing, unexpected, errors, path=path):
            events.append(["load_pre", path, prefix, strict])
        def post(module, incompatible, path=path):
            events.append(["load_post", path])
        def sd_post(module, state_dict, prefix, local_metadata, path=path):
            events.append(["state_dict_post", path, prefix, len(state_dict)])
        mod._register_load_state_dict_pre_hook(pre, with_module=True)
        mod.register_load_state_dict_post_hook(post)
        mod._register_state_dict_hook(sd_post)
    result = other.load_state_dict(sd, strict=False)
    try:
        other.load_state_dict(sd, strict=True)
        message = None
    except RuntimeError as e:
        message = str(e)
    events_strict_start = len(events)
    other.state_dict()
    incompatible = {"missing_keys": result.missing_keys, "unexpected_keys": result.unexpected_keys,
                    "strict_message": message, "load_events": events[:events_strict_start // 2],
                    "state_dict_events": events[events_strict_start:]}

    expected = {"incompatible": incompatible, "model": {k: describe(v) for k, v in sd.items()}, "dtypes": {k: describe(v) for k, v in dt.items()},
                "input": x.reshape(-1).tolist(), "input_shape": list(x.shape),
                "output": y.reshape(-1).tolist(), "output_shape": list(y.shape), "torch": torch.__version__}
    with open(os.path.join(HERE, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1)


if __name__ == "__main__":
    main()
