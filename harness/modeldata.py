"""A compressed model as data: its structure as JSON, its tensors as safetensors. Never a pickle.

Why: a pickled nn.Module (`torch.save(module)`, loaded with `weights_only=False`) runs whatever
code the file names when it is loaded, and the cache is shared between runs and machines. Here
a model is stored as

- the architecture as data: which registry model it was built from, and per module path what
  a method changed in it (a conv/linear/batch-norm with other sizes, a layer replaced by a
  Sequential of such layers, a layer removed), as plain JSON (`structure_changes`);
- its state dict as safetensors (a JSON header plus raw bytes); torch.ao's quantized tensors
  are stored as their integer values plus scales and zero points, so one format serves the
  fp32 models and the torch.ao INT8 modules (`state_bytes`, `load_state`).

Rebuilding = build the registry model as the harness builds it, apply the recorded changes
(only the module types in `_LEAVES` and `nn.Sequential` can be built from data), load the
tensors strictly. A torch.ao INT8 module is rebuilt as torch.ao makes it (`int8_template`:
prepare + convert of the rebuilt fp32 model, no calibration) and then gets its stored tensors.
Whatever a method did that this cannot express (a custom module type, a changed attribute, a
hook) is caught before anything is cached: `differences` compares a rebuilt model with the
original (structure, every tensor bit for bit, outputs on a probe batch), and a model that
does not come back identical is simply not cached.

Not used, and why: `torch.export.save/load` (its archive loader calls `torch.load(...,
weights_only=False)` and `pickle.loads` on some payloads); `torch.load(weights_only=True)` of
a state dict (a restricted unpickler: safe by allowlist, but still a pickle parser, and
safetensors needs none).
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

FORMAT = "compressmark-state-1"


class NotRebuildable(ValueError):
    """The model holds a change this module cannot express as data."""


# ---- architecture as data ----------------------------------------------------------------

def _plain(v: Any) -> Any:
    return list(v) if isinstance(v, tuple) else v


def _conv_args(m: nn.Module) -> dict[str, Any]:
    return {"in_channels": m.in_channels, "out_channels": m.out_channels,
            "kernel_size": _plain(m.kernel_size), "stride": _plain(m.stride),
            "padding": _plain(m.padding), "dilation": _plain(m.dilation), "groups": m.groups,
            "bias": m.bias is not None, "padding_mode": m.padding_mode}


def _linear_args(m: nn.Module) -> dict[str, Any]:
    return {"in_features": m.in_features, "out_features": m.out_features,
            "bias": m.bias is not None}


def _bn_args(m: nn.Module) -> dict[str, Any]:
    return {"num_features": m.num_features, "eps": m.eps, "momentum": m.momentum,
            "affine": m.affine, "track_running_stats": m.track_running_stats}


# the module types a structure change may create: exact types only (a subclass may carry
# behaviour its constructor arguments do not say)
_LEAVES: dict[str, tuple[type[nn.Module], Callable[[nn.Module], dict[str, Any]]]] = {
    "Conv1d": (nn.Conv1d, _conv_args),
    "Conv2d": (nn.Conv2d, _conv_args),
    "Linear": (nn.Linear, _linear_args),
    "BatchNorm1d": (nn.BatchNorm1d, _bn_args),
    "BatchNorm2d": (nn.BatchNorm2d, _bn_args),
    "Identity": (nn.Identity, lambda m: {}),
}
_LEAF_TYPES = {cls: name for name, (cls, _) in _LEAVES.items()}
_CONV = frozenset(("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation",
                   "groups", "bias", "padding_mode"))
_BN = frozenset(("num_features", "eps", "momentum", "affine", "track_running_stats"))
_KEYS: dict[str, frozenset[str]] = {
    "Conv1d": _CONV, "Conv2d": _CONV, "BatchNorm1d": _BN, "BatchNorm2d": _BN,
    "Linear": frozenset(("in_features", "out_features", "bias")), "Identity": frozenset(),
}


def _spec(m: nn.Module | None) -> dict[str, Any]:
    """A buildable module as data (NotRebuildable for any other)."""
    if m is None:
        return {"type": "None"}
    name = _LEAF_TYPES.get(type(m))
    if name is not None:
        return {"type": name, "args": _LEAVES[name][1](m)}
    if type(m) is nn.Sequential:
        return {"type": "Sequential",
                "children": [[k, _spec(c)] for k, c in m._modules.items()]}
    raise NotRebuildable(f"a {type(m).__module__}.{type(m).__qualname__} cannot be rebuilt "
                         f"from data")


def _build(spec: Any) -> nn.Module | None:
    """The module a spec describes; nothing but the types above is ever constructed."""
    if not isinstance(spec, dict) or not isinstance(spec.get("type"), str):
        raise NotRebuildable(f"not a module spec: {spec!r:.80}")
    kind = spec["type"]
    if kind == "None":
        return None
    if kind == "Sequential":
        seq = nn.Sequential()
        for item in spec.get("children", []):
            if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str)):
                raise NotRebuildable("a Sequential child is not [name, spec]")
            seq.add_module(item[0], _build(item[1]))
        return seq
    if kind not in _LEAVES:
        raise NotRebuildable(f"unknown module type '{kind}'")
    args = spec.get("args")
    if not isinstance(args, dict) or set(args) != _KEYS[kind]:
        raise NotRebuildable(f"{kind}: arguments {sorted(args or {})} (expected "
                             f"{sorted(_KEYS[kind])})")
    return _LEAVES[kind][0](**args)


def structure_changes(base: nn.Module, model: nn.Module) -> dict[str, Any]:
    """Per module path (dotted, as in named_modules), what `model` has instead of what the
    freshly built `base` has: a module spec (the whole replaced module), or
    {"type": "None", "removed": true} for a child the model no longer has.
    NotRebuildable when a difference needs a module type that cannot be built from data."""
    changes: dict[str, Any] = {}

    def walk(b: nn.Module | None, m: nn.Module | None, path: str) -> None:
        leaf = _LEAF_TYPES.get(type(m))
        if type(b) is not type(m) or (leaf and _LEAVES[leaf][1](b) != _LEAVES[leaf][1](m)):
            if not path:
                raise NotRebuildable(f"the model is a {type(m).__qualname__}, not a "
                                     f"{type(b).__qualname__}")
            changes[path] = _spec(m)
            return
        if m is None or leaf:
            return
        bc, mc = b._modules, m._modules  # type: ignore[union-attr]
        for name in [*bc, *(n for n in mc if n not in bc)]:
            sub = f"{path}.{name}" if path else name
            if name not in mc:
                changes[sub] = {"type": "None", "removed": True}
            elif name not in bc:
                changes[sub] = _spec(mc[name])
            else:
                walk(bc[name], mc[name], sub)

    walk(base, model, "")
    return changes


def apply_changes(base: nn.Module, changes: dict[str, Any]) -> nn.Module:
    """`base` with `changes` (from structure_changes) applied, in place."""
    if not isinstance(changes, dict):
        raise NotRebuildable("structure changes are not a mapping")
    for path in sorted(changes, key=lambda p: p.count(".")):
        spec = changes[path]
        parent_path, _, attr = path.rpartition(".")
        if not attr:
            raise NotRebuildable("the root module cannot be replaced")
        try:
            parent = base.get_submodule(parent_path) if parent_path else base
        except AttributeError as exc:
            raise NotRebuildable(f"no module '{parent_path}' to change") from exc
        if isinstance(spec, dict) and spec.get("removed"):
            if attr not in parent._modules:
                raise NotRebuildable(f"no module '{path}' to remove")
            del parent._modules[attr]
        else:
            parent._modules[attr] = _build(spec)
    return base


# ---- tensors as safetensors (fp32 and torch.ao quantized) --------------------------------

_DTYPES = {str(d).removeprefix("torch."): d for d in (
    torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64, torch.int32,
    torch.int16, torch.int8, torch.uint8, torch.bool, torch.qint8, torch.quint8, torch.qint32)}


def _dtype(name: Any) -> torch.dtype:
    if name not in _DTYPES:
        raise NotRebuildable(f"dtype {name!r} is not one a cached model may hold")
    return _DTYPES[name]


def state_bytes(module: nn.Module) -> bytes:
    """The module's state dict as safetensors. Plain tensors keep their state-dict names
    (readable by any safetensors tool); quantized tensors, dtypes and tuples (torch.ao's packed
    linear parameters) are described in the header's metadata and point at plain tensors."""
    from safetensors.torch import save

    tensors: dict[str, torch.Tensor] = {}

    def put(key: str, t: torch.Tensor) -> str:
        if key in tensors:
            raise NotRebuildable(f"two state entries would be stored as '{key}'")
        tensors[key] = t.detach().cpu().contiguous().clone()
        return key

    def node(key: str, v: Any) -> Any:
        if isinstance(v, torch.Tensor):
            if not v.is_quantized:
                return {"t": put(key, v)}
            scheme = v.qscheme()
            base = {"int": put(f"{key}:int", v.int_repr()),
                    "dtype": str(v.dtype).removeprefix("torch."), "shape": list(v.shape)}
            if scheme == torch.per_tensor_affine:
                return {"q": "per_tensor", "scale": float(v.q_scale()),
                        "zero_point": int(v.q_zero_point()), **base}
            if scheme in (torch.per_channel_affine, torch.per_channel_affine_float_qparams):
                return {"q": "per_channel", "axis": int(v.q_per_channel_axis()),
                        "scales": put(f"{key}:scales", v.q_per_channel_scales()),
                        "zero_points": put(f"{key}:zero_points", v.q_per_channel_zero_points()),
                        "float_qparams": scheme == torch.per_channel_affine_float_qparams,
                        **base}
            raise NotRebuildable(f"{key}: quantization scheme {scheme} is not supported")
        if isinstance(v, torch.dtype):
            name = str(v).removeprefix("torch.")
            _dtype(name)  # only the dtypes decode_state accepts
            return {"dtype": name}
        if isinstance(v, tuple | list):
            return {"seq": [node(f"{key}:{i}", x) for i, x in enumerate(v)],
                    "tuple": isinstance(v, tuple)}
        if v is None or isinstance(v, bool | int | float | str):
            return {"v": v}
        raise NotRebuildable(f"{key}: a {type(v).__name__} in the state dict cannot be stored")

    state = module.state_dict()
    index = {k: node(k, v) for k, v in state.items()}
    # per-module state versions: torch.ao's quantized modules read their tensors by version
    versions = {k: dict(v) for k, v in getattr(state, "_metadata", {}).items()}
    return save(tensors, metadata={"format": FORMAT, "index": json.dumps(index),
                                   "versions": json.dumps(versions)})


def _header(data: bytes) -> dict[str, Any]:
    if len(data) < 8:
        raise NotRebuildable("not a safetensors file (too short)")
    n = int.from_bytes(data[:8], "little")
    if n > len(data) - 8:
        raise NotRebuildable("not a safetensors file (header past the end)")
    header = json.loads(data[8 : 8 + n])
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise NotRebuildable("a safetensors file of another format")
    return meta


def decode_state(data: bytes) -> dict[str, Any]:
    """The state dict `state_bytes` wrote (NotRebuildable or ValueError when malformed)."""
    from safetensors.torch import load

    header = _header(data)
    index = json.loads(header["index"])
    tensors = load(data)
    if not isinstance(index, dict):
        raise NotRebuildable("the state index is not a mapping")

    def tensor(key: Any) -> torch.Tensor:
        if key not in tensors:
            raise NotRebuildable(f"tensor {key!r} is missing")
        return tensors[key]

    def value(n: Any) -> Any:
        if not isinstance(n, dict):
            raise NotRebuildable(f"malformed state entry {n!r:.80}")
        if "t" in n:
            return tensor(n["t"])
        if "q" in n:
            ints, dtype = tensor(n["int"]), _dtype(n["dtype"])
            if n["q"] == "per_tensor":
                q = torch._make_per_tensor_quantized_tensor(ints, float(n["scale"]),
                                                            int(n["zero_point"]))
            elif n["q"] == "per_channel":
                scales, zps = tensor(n["scales"]), tensor(n["zero_points"])
                q = torch._make_per_channel_quantized_tensor(ints, scales, zps, int(n["axis"]))
            else:
                raise NotRebuildable(f"unknown quantization {n['q']!r}")
            if q.dtype != dtype or list(q.shape) != n.get("shape"):
                raise NotRebuildable("a quantized tensor's dtype or shape does not match")
            return q
        if "dtype" in n:
            return _dtype(n["dtype"])
        if "seq" in n and isinstance(n["seq"], list):
            items = [value(x) for x in n["seq"]]
            return tuple(items) if n.get("tuple") else items
        if "v" in n and (n["v"] is None or isinstance(n["v"], bool | int | float | str)):
            return n["v"]
        raise NotRebuildable(f"malformed state entry {n!r:.80}")

    state: OrderedDict[str, Any] = OrderedDict((k, value(v)) for k, v in index.items())
    versions = json.loads(header.get("versions", "{}"))
    if not isinstance(versions, dict) or not all(
            isinstance(v, dict) and all(isinstance(x, int | str | bool | None) for x in v.values())
            for v in versions.values()):
        raise NotRebuildable("malformed state versions")
    state._metadata = OrderedDict(versions)  # type: ignore[attr-defined]
    return state


def load_state(module: nn.Module, data: bytes) -> nn.Module:
    """`module` with the tensors of `data` loaded strictly (every key, no extra ones)."""
    state = decode_state(data)
    own = module.state_dict()
    for k, v in state.items():  # load_state_dict would cast a float64 into a float32 quietly
        mine = own.get(k)
        if isinstance(v, torch.Tensor) and isinstance(mine, torch.Tensor) and (
                v.dtype != mine.dtype or v.shape != mine.shape):
            raise NotRebuildable(f"{k}: stored {v.dtype} {tuple(v.shape)}, the model has "
                                 f"{mine.dtype} {tuple(mine.shape)}")
    module.load_state_dict(state, strict=True)
    return module


# ---- torch.ao INT8 modules -----------------------------------------------------------------

def int8_template(fp32: nn.Module, input_shape: tuple[int, ...]) -> nn.Module:
    """The torch.ao FX x86 INT8 module of `fp32`'s structure (prepare + convert, observers not
    calibrated): what `load_state` fills with a stored INT8 module's tensors. Post-training and
    QAT conversions give the same graph (the QAT-trained weights and ranges are in the tensors)."""
    import copy
    import warnings

    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.backends.quantized.engine = "x86"
        example = (torch.zeros((2, *input_shape)),)
        prepared = prepare_fx(copy.deepcopy(fp32).eval(), get_default_qconfig_mapping("x86"),
                              example)
        return convert_fx(prepared).eval()


# ---- checking a rebuilt model against the original ---------------------------------------

def _structure(m: nn.Module) -> list[tuple[str, str, Any]]:
    out = []
    for path, mod in m.named_modules(remove_duplicate=False):
        leaf = _LEAF_TYPES.get(type(mod))
        out.append((path, f"{type(mod).__module__}.{type(mod).__qualname__}",
                    _LEAVES[leaf][1](mod) if leaf else None))
    return out


def _same_value(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)):
            return False
        if a.dtype != b.dtype or a.shape != b.shape or a.is_quantized != b.is_quantized:
            return False
        if a.is_quantized:
            return (a.qscheme() == b.qscheme() and torch.equal(a.int_repr(), b.int_repr())
                    and torch.equal(a.dequantize(), b.dequantize()))
        if torch.equal(a, b):
            return True
        return bool(a.is_floating_point() and torch.equal(a.isnan(), b.isnan())
                    and torch.equal(a.nan_to_num(), b.nan_to_num()))
    if isinstance(a, tuple | list) and isinstance(b, tuple | list):
        return len(a) == len(b) and all(_same_value(x, y) for x, y in zip(a, b))
    return bool(a == b)


def _outputs(out: Any) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        return [t for k in sorted(out) for t in _outputs(out[k])]
    if isinstance(out, tuple | list):
        return [t for x in out for t in _outputs(x)]
    return []


def probe_input(input_shape: tuple[int, ...], batch: int = 2) -> torch.Tensor:
    """A fixed pseudo-random batch (its own generator: the global RNG is not touched)."""
    g = torch.Generator().manual_seed(1234)
    return torch.randn((batch, *input_shape), generator=g)


def differences(original: nn.Module, rebuilt: nn.Module, input_shape: tuple[int, ...]
                ) -> str | None:
    """None when `rebuilt` is `original` again: the same module tree, every state tensor bit
    for bit, a GraphModule's same code, and identical outputs on a probe batch; else why not."""
    if _structure(original) != _structure(rebuilt):
        return "the module structure differs"
    code = getattr(original, "code", None), getattr(rebuilt, "code", None)
    if code[0] is not None and str(code[0]) != str(code[1]):
        return "the graph code differs"
    a, b = original.state_dict(), rebuilt.state_dict()
    if list(a) != list(b):
        return "the state dict keys differ"
    for k in a:
        if not _same_value(a[k], b[k]):
            return f"state '{k}' differs"
    x = probe_input(input_shape)
    with torch.inference_mode():
        out_a, out_b = _outputs(original.eval()(x)), _outputs(rebuilt.eval()(x))
    if len(out_a) != len(out_b) or not out_a:
        return "the outputs differ in number"
    for i, (p, q) in enumerate(zip(out_a, out_b)):
        if not _same_value(p, q):
            return f"output {i} differs on the probe batch"
    return None
