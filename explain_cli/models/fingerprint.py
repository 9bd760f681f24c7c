"""What defines a torch model's graph, as one hash: the key of the ONNX export cache.

The key must change whenever the exported graph could: edited code, a plain attribute (a flag,
a scale, an activation chosen in ``__init__``), a parameter or buffer, the training flag, a
forward hook. Three cases:

* a TorchScript or ``.pt2`` file used as loaded: the file holds the code and the weights, so
  its sha256 names the program;
* a live TorchScript module: the bytes ``torch.jit.save`` writes (code, attributes, tensors);
* an ``nn.Module``: for every submodule, its class's running code (the bytecode of each
  method along the MRO) and the whole source file of each class (so helpers and constants
  beside the class count), its plain attributes and forward hooks, then every parameter and
  buffer, bytes included.

Why not hash the traced program (``torch.export``'s graph code)? Tracing costs a second or
more per run on resnet18 (and is what the export itself does); the structural hash costs a
hash of the weights. It errs towards re-exporting (any edit in a class's file invalidates).
What it can miss, code in another file that a forward calls, the probe check that runs on
every load of a cached export catches whenever it changes the outputs.
"""

from __future__ import annotations

import enum
import hashlib
import inspect
import io
import types
from functools import partial
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from explain_cli.models.base import LoadedModel

# Module bookkeeping that never changes a forward pass (state-dict and backward hooks).
_INERT = frozenset({
    "_parameters", "_buffers", "_modules", "_non_persistent_buffers_set", "_backward_hooks",
    "_backward_pre_hooks", "_is_full_backward_hook", "_state_dict_hooks", "_state_dict_pre_hooks",
    "_load_state_dict_pre_hooks", "_load_state_dict_post_hooks", "_compiled_call_impl",
})
_MAX_DEPTH = 6  # nested plain objects described this deep; deeper ones by type only


def graph_fingerprint(model: "LoadedModel") -> str | None:
    """A hex sha256 naming the model's graph (code, attributes, weights); None for a plain callable."""
    import torch

    module = model.module
    digest = hashlib.sha256()
    if model.kind in ("torchscript", "pt2") and model.sha256 and model.weights is None:
        digest.update(f"file|{model.kind}|{model.sha256}".encode())
    elif isinstance(module, torch.jit.ScriptModule):
        buffer = io.BytesIO()
        torch.jit.save(module, buffer)
        digest.update(b"script|" + buffer.getvalue())
    elif isinstance(module, torch.nn.Module):
        module_digest(module, digest)
    else:
        return None
    return digest.hexdigest()


def module_digest(module: Any, digest: "hashlib._Hash") -> None:
    """Feed ``digest`` with everything about an ``nn.Module`` that can change its forward pass."""
    files: dict[str, bytes] = {}
    for name, sub in module.named_modules(remove_duplicate=False):
        cls = type(sub)
        digest.update(f"module|{name}|{cls.__module__}.{cls.__qualname__}|{sub.training}".encode())
        digest.update(class_digest(cls, files))
        code = getattr(sub, "code", None)  # fx GraphModules (a .pt2's module()) carry their generated code
        if isinstance(code, str):
            digest.update(code.encode())
        for key in sorted(vars(sub)):
            value = vars(sub)[key]
            if key in _INERT:
                continue
            if key.startswith("_") and "hooks" in key and isinstance(value, dict):
                value = list(value.values())  # keyed by global handle ids, which differ between processes
            digest.update(f"attr|{key}|{describe(value)}".encode())
    for kind, named in (("param", module.named_parameters()), ("buffer", module.named_buffers())):
        for name, tensor in named:
            digest.update(f"{kind}|{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
            digest.update(tensor_bytes(tensor))


def class_digest(cls: type, files: dict[str, bytes]) -> bytes:
    """The running code of ``cls`` and of its bases (nn.Module and object aside), plus their source files."""
    import torch

    digest = hashlib.sha256()
    for klass in cls.__mro__:
        if klass in (torch.nn.Module, object):
            continue
        digest.update(f"class|{klass.__module__}.{klass.__qualname__}".encode())
        for key in sorted(vars(klass)):
            value = vars(klass)[key]
            if isinstance(value, (staticmethod, classmethod)):
                value = value.__func__
            if isinstance(value, property):
                value = value.fget
            if isinstance(value, types.FunctionType):
                digest.update(f"{key}|{describe(value)}".encode())
        digest.update(_source_file(klass, files))
    return digest.digest()


def describe(value: Any, depth: int = 0) -> str:
    """A text for ``value`` that is the same in every process (no ids, no addresses)."""
    if value is None or isinstance(value, (bool, int, float, complex, str, bytes)):
        return repr(value)
    if depth >= _MAX_DEPTH:
        return _type_name(value)
    if isinstance(value, (list, tuple)):
        return f"{type(value).__name__}[{','.join(describe(v, depth + 1) for v in value)}]"
    if isinstance(value, dict):
        items = sorted(f"{describe(k, depth + 1)}:{describe(v, depth + 1)}" for k, v in value.items())
        return f"dict{{{','.join(items)}}}"
    if isinstance(value, (set, frozenset)):
        return f"set{{{','.join(sorted(describe(v, depth + 1) for v in value))}}}"
    if isinstance(value, types.FunctionType):
        cells = [describe(c.cell_contents, depth + 1) if _filled(c) else "?" for c in value.__closure__ or ()]
        return f"fn[{_code_text(value.__code__)}|{describe(value.__defaults__, depth + 1)}|{','.join(cells)}]"
    if isinstance(value, types.MethodType):
        return f"method[{describe(value.__func__, depth + 1)}|{_type_name(value.__self__)}]"
    if isinstance(value, partial):
        return f"partial[{describe(value.func, depth + 1)}|{describe(value.args, depth + 1)}|{describe(value.keywords, depth + 1)}]"
    if isinstance(value, (types.BuiltinFunctionType, types.ModuleType, type)):
        return f"{getattr(value, '__module__', '')}.{getattr(value, '__qualname__', getattr(value, '__name__', ''))}"
    array = _as_array_bytes(value)
    if array is not None:
        return f"array[{hashlib.sha256(array).hexdigest()}]"
    if isinstance(value, enum.Enum):
        return f"{_type_name(value)}.{value.name}"
    if _is_torch_constant(value):
        return f"{_type_name(value)}({value})"
    if hasattr(value, "__dict__") and not isinstance(value, type):
        import torch

        if isinstance(value, torch.nn.Module):
            return f"module[{_type_name(value)}]"  # a submodule reached outside _modules; its tensors are not ours to hash
        return f"{_type_name(value)}{describe(vars(value), depth + 1)}"
    return _type_name(value)


def tensor_bytes(tensor: Any) -> bytes:
    """A tensor's raw bytes on the CPU, for any dtype."""
    import torch

    t = tensor.detach()
    if t.is_quantized:
        t = t.int_repr()
    t = t.to("cpu").contiguous().reshape(-1)
    if t.numel() == 0:
        return b""
    return t.view(torch.uint8).numpy().tobytes() if t.dtype != torch.bool else t.numpy().tobytes()


def _as_array_bytes(value: Any) -> bytes | None:
    import numpy as np
    import torch

    if isinstance(value, torch.Tensor):
        return f"{value.dtype}|{tuple(value.shape)}|".encode() + tensor_bytes(value)
    if isinstance(value, np.ndarray):
        return f"{value.dtype}|{value.shape}|".encode() + np.ascontiguousarray(value).tobytes()
    return None


def _code_text(code: types.CodeType) -> str:
    """Bytecode, constants and names: not the file name or line numbers (generated code moves)."""
    consts = ",".join(_code_text(c) if isinstance(c, types.CodeType) else describe(c) for c in code.co_consts)
    return (f"{code.co_code.hex()}|{consts}|{code.co_names}|{code.co_varnames}|{code.co_freevars}|"
            f"{code.co_argcount}|{code.co_kwonlyargcount}|{code.co_flags}")


def _source_file(klass: type, files: dict[str, bytes]) -> bytes:
    """The sha256 of the file defining ``klass`` (b'' when it has none, as in a REPL)."""
    try:
        path = inspect.getsourcefile(klass)
    except (TypeError, OSError):
        return b""
    if not path:
        return b""
    if path not in files:
        try:
            with open(path, "rb") as fh:
                files[path] = hashlib.sha256(fh.read()).digest()
        except OSError:
            files[path] = b""
    return files[path]


def _is_torch_constant(value: Any) -> bool:
    import torch

    return isinstance(value, (torch.dtype, torch.device, torch.memory_format, torch.layout, torch.Size))


def _filled(cell: Any) -> bool:
    try:
        cell.cell_contents
    except ValueError:
        return False
    return True


def _type_name(value: Any) -> str:
    cls = type(value)
    return f"{cls.__module__}.{cls.__qualname__}"
