"""torch.export archives (``.pt2``, written by ``torch.export.save``), loaded without running a pickle.

What ``torch.export.load`` (torch 2.14) would execute, and how each is closed here:

* ``data/weights`` and ``data/constants`` entries marked ``use_pickle`` are read with
  ``torch.load(weights_only=False)``; the legacy ``data/weights/MODEL.pt`` and
  ``data/sample_inputs/MODEL.pt`` go through ``deserialize_torch_artifact``, which retries with
  ``weights_only=False`` after *any* exception. -> every such entry must load with
  ``weights_only=True`` as plain tensors (checked here first), and during the load
  ``torch.load`` is forced to ``weights_only=True`` so no fallback can unpickle.
* ``custom_obj_*`` constants go through the TorchScript pickler, ``opaque_obj_*`` through
  ``pickle.loads``. -> refused; both loaders are replaced by a refusal during the load.
* ``data/aotinductor/`` holds compiled shared libraries that are loaded (native code). -> refused.
* Outside pickles, the program JSON reaches ``eval``-like sinks: symbolic shapes are parsed with
  ``sympy.sympify`` (Python ``eval``), node names and attribute paths are pasted into the
  generated ``forward`` source, ``guards_code`` is compiled into a guard function, and node
  targets are resolved by ``getattr`` from ``torch`` (``torch.load`` is a ``torch`` attribute).
  -> names must be identifiers, paths dotted identifiers, shape expressions sympy-repr tokens
  only, ``guards_code`` empty, targets ``torch.ops.*`` operators or pure operators.
"""

from __future__ import annotations

import contextlib
import io
import json
import keyword
import logging
import re
import threading
import tokenize
import warnings
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from explain_cli.errors import ExplainError, one_line
from explain_cli.fileio import sha256_file
from explain_cli.models.base import METADATA_FILE, LoadedModel, metadata_fields, parse_metadata

if TYPE_CHECKING:
    import torch

EXPORT_HINT = "re-export a plain nn.Module with torch.export.save(torch.export.export(model, (x,)), PATH)"

# Names a sympy ``srepr``/``str`` of a torch symbolic shape uses; anything else in an
# expression (``__import__``, ``open``, attribute access) is refused before sympify sees it.
_SYMPY_NAMES = frozenset(
    """Symbol Dummy Integer Rational Float Add Mul Pow Mod Max Min Abs floor ceiling sqrt exp log
    Eq Ne Lt Le Gt Ge And Or Not Piecewise ExprCondPair ITE true false True False None oo zoo nan
    Half One Zero NegativeOne Infinity NegativeInfinity BooleanTrue BooleanFalse
    StrictLessThan StrictGreaterThan LessThan GreaterThan Equality Unequality
    FloorDiv ModularIndexing Where PythonMod CleanDiv CeilToInt FloorToInt CeilDiv LShift RShift
    PowByNatural FloatPow FloatTrueDiv IntTrueDiv IsNonOverlappingAndDenseIndicator TruncToFloat
    TruncToInt RoundToInt RoundDecimal ToFloat Identity""".split()
)
_SYMBOL = re.compile(r"[a-z]+[0-9]+\Z")  # s0, u3, zuf0: torch's symbol names
_EXPR_OPS = frozenset("( ) , + - * / ** // % < > <= >= == != = & | ~ ^".split())
_DOTTED = re.compile(r"[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*\Z")
_SYM_TARGETS = frozenset(
    f"torch.{n}" for n in "sym_int sym_float sym_max sym_min sym_not sym_ite sym_sqrt sym_sum sym_fresh_size".split()
)
_OPERATOR_TARGETS = frozenset(
    """getitem add sub mul truediv floordiv mod pow neg pos abs eq ne lt le gt ge and_ or_ xor not_
    invert lshift rshift matmul""".split()
)
_FORBIDDEN_DIRS = {
    "data/aotinductor/": "compiled native code (AOTInductor), which runs when loaded",
    "data/executorch/": "an ExecuTorch program",
    "data/mtia": "MTIA device code",
    "xl_model_weights/": "externally stored weights",
}
_load_lock = threading.Lock()


def archive_root(names: list[str]) -> str | None:
    """The folder prefix of a torch.export archive (``NAME/``), or None if ``names`` is not one."""
    for name in names:
        head, _, tail = name.rpartition("/")
        if tail == "archive_format" and "/" not in head:
            return f"{head}/" if head else ""
    return None


def is_pt2(archive: zipfile.ZipFile) -> bool:
    """Content sniffing: a zip whose ``archive_format`` record says ``pt2``."""
    root = archive_root(archive.namelist())
    if root is None:
        return False
    try:
        return archive.read(f"{root}archive_format").strip() == b"pt2"
    except KeyError:
        return False


def load_pt2(path: Path, device: "torch.device") -> LoadedModel:
    """Load a ``.pt2`` archive after proving nothing in it can execute code.

    Raises
    ------
    ExplainError
        If an entry is a pickle of anything but tensors, holds native code, or the program
        JSON carries something that would be evaluated; or if torch cannot load it.
    """
    import torch

    origin = f"model {path}"
    with zipfile.ZipFile(path) as archive:
        check_pt2_archive(archive, origin)
    extra = {METADATA_FILE: ""}
    try:
        with open(path, "rb") as fh, _pickle_free_loading():
            # A file object, not the path: torch warns about names not ending in .pt2.
            program = torch.export.load(fh, extra_files=extra)
    except ExplainError:
        raise
    except Exception as exc:
        raise ExplainError(f"cannot load torch.export archive {path}: {one_line(exc)[:200]}; {EXPORT_HINT}") from None
    metadata = parse_metadata(extra.get(METADATA_FILE), origin)
    try:
        module = program.module().to(device)
    except Exception as exc:
        raise ExplainError(f"cannot run torch.export archive {path} on {device}: {one_line(exc)[:200]}") from None
    return LoadedModel(
        module=module,
        source=str(path),
        kind="pt2",
        sha256=sha256_file(path),
        weights=None,
        device=device,
        metadata=metadata,
        **metadata_fields(metadata),
    )


def check_pt2_archive(archive: zipfile.ZipFile, origin: str) -> None:
    """Refuse an archive holding anything torch.export.load would execute (see the module docstring)."""
    names = archive.namelist()
    root = archive_root(names) or ""
    rel = [n[len(root) :] for n in names if n.startswith(root)]

    def refuse(what: str) -> ExplainError:
        return ExplainError(f"{origin}: {what}, so it is refused; {EXPORT_HINT}")

    for name in rel:
        for folder, why in _FORBIDDEN_DIRS.items():
            if name.startswith(folder):
                raise refuse(f"the archive holds {why} ({name})")
    programs = sorted(n[len("models/") : -len(".json")] for n in rel if n.startswith("models/") and n.endswith(".json"))
    if "model" not in programs:
        raise ExplainError(f"{origin}: not a torch.export archive with a model program (models/model.json missing); {EXPORT_HINT}")
    for program in programs:
        for legacy in (f"data/weights/{program}.pt", f"data/constants/{program}.pt"):
            if legacy in rel:
                _require_plain_tensors(archive.read(root + legacy), f"{legacy}", refuse)
        samples = f"data/sample_inputs/{program}.pt"
        if samples in rel and archive.getinfo(root + samples).file_size:
            _require_plain_tensors(archive.read(root + samples), samples, refuse)
        for kind in ("weights", "constants"):
            config_name = f"data/{kind}/{program}_{kind}_config.json"
            if config_name in rel:
                _check_payloads(archive, root, kind, _json(archive.read(root + config_name), config_name, refuse), refuse)
        _check_program(_json(archive.read(root + f"models/{program}.json"), f"models/{program}.json", refuse), refuse)


def _json(data: bytes, name: str, refuse) -> Any:
    try:
        return json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise refuse(f"{name} is not valid JSON") from None


def _check_payloads(archive: zipfile.ZipFile, root: str, kind: str, config: Any, refuse) -> None:
    """Weights/constants configs: pickled payloads must be plain tensors; objects are refused."""
    entries = config.get("config") if isinstance(config, dict) else None
    if not isinstance(entries, dict):
        raise refuse(f"data/{kind} config has no 'config' table")
    for fqn, meta in entries.items():
        if not (isinstance(meta, dict) and isinstance(meta.get("path_name"), str)):
            raise refuse(f"data/{kind} entry {fqn!r} is malformed")
        if not _DOTTED.match(fqn):
            raise refuse(f"data/{kind} name {fqn!r} is not a dotted attribute path")
        path_name = meta["path_name"]
        if kind == "constants" and path_name.startswith(("custom_obj_", "opaque_obj_")):
            loader = "the TorchScript pickler" if path_name.startswith("custom_obj_") else "pickle.loads"
            raise refuse(f"constant {fqn!r} is a Python object read with {loader}")
        if kind == "constants" and not path_name.startswith("tensor_"):
            raise refuse(f"constant {fqn!r} has an unknown payload type ({path_name})")
        if meta.get("use_pickle"):
            record = f"{root}data/{kind}/{path_name}"
            try:
                data = archive.read(record)
            except KeyError:
                raise refuse(f"payload {record} is missing") from None
            _require_plain_tensors(data, f"data/{kind}/{path_name}", refuse)


def _require_plain_tensors(data: bytes, name: str, refuse) -> None:
    """The pickle must load with ``weights_only=True`` into tensors and plain containers only."""
    import pickle

    import torch

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pickle-protocol notices
            obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, AttributeError, TypeError, ValueError, EOFError, KeyError):
        raise refuse(f"{name} is a pickle of something other than plain tensors, which could run code") from None
    if not _plain(obj):
        raise refuse(f"{name} holds a {type(obj).__name__} object, not plain tensors")


def _plain(obj: Any) -> bool:
    import torch

    if isinstance(obj, (list, tuple)):
        return all(_plain(v) for v in obj)
    if isinstance(obj, dict):
        return all(isinstance(k, (str, int)) and _plain(v) for k, v in obj.items())
    return obj is None or type(obj) in (torch.Tensor, torch.nn.Parameter, int, float, bool, str)


def _check_program(doc: Any, refuse) -> None:
    """Walk the program JSON; refuse strings that would reach generated code or eval."""
    if not isinstance(doc, dict) or not isinstance(doc.get("graph_module"), dict):
        raise refuse("models/model.json is not an exported program")
    if doc.get("guards_code"):
        raise refuse("the program carries guards_code (Python source compiled when the model is built)")
    for key, value in _strings(doc):
        if key == "name" and not (value.isidentifier() and not keyword.iskeyword(value)):
            raise refuse(f"graph name {value[:60]!r} is not a Python identifier")
        elif (key.endswith("_name") or key in ("fqn", "class_fqn")) and value and not _DOTTED.match(value):
            raise refuse(f"{key} {value[:60]!r} is not a dotted attribute path")
        elif key == "forward_arg_names" and not value.isidentifier():
            raise refuse(f"argument name {value[:60]!r} is not a Python identifier")
        elif key == "expr_str":
            _check_expr(value, refuse)
        elif key == "target":
            _check_target(value, refuse)


def _strings(obj: Any, key: str = "") -> Iterator[tuple[str, str]]:
    """(key, string) pairs of a JSON tree; node ``metadata`` (debug text never compiled) is skipped."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k != "metadata":
                yield from _strings(v, k)
    elif isinstance(obj, list):
        for v in obj:
            yield from _strings(v, key)
    elif isinstance(obj, str):
        yield key, obj


def _check_target(target: str, refuse) -> None:
    head, _, tail = target.partition(".")
    ok = (
        (target.startswith("torch.ops.") and _DOTTED.match(target) is not None)
        or target in _SYM_TARGETS
        or (head == "_operator" and tail in _OPERATOR_TARGETS)
        or (head == "math" and tail.isidentifier())
    )
    if not ok:
        raise refuse(f"node target {target[:60]!r} is not a torch operator")


def _check_expr(expr: str, refuse) -> None:
    """Accept only the tokens of a sympy repr: known class names, symbol names, numbers, operators."""
    try:
        tokens = [t for t in tokenize.generate_tokens(io.StringIO(expr).readline)
                  if t.type not in (tokenize.NEWLINE, tokenize.NL, tokenize.ENDMARKER, tokenize.INDENT, tokenize.DEDENT)]
    except (tokenize.TokenError, IndentationError, SyntaxError):
        raise refuse(f"shape expression {expr[:60]!r} does not parse") from None
    for i, tok in enumerate(tokens):
        nxt = tokens[i + 1].string if i + 1 < len(tokens) else ""
        if tok.type == tokenize.NUMBER:
            continue
        if tok.type == tokenize.STRING and re.fullmatch(r"""(['"])[A-Za-z_][A-Za-z0-9_]*\1""", tok.string):
            continue
        if tok.type == tokenize.NAME and (
            tok.string in _SYMPY_NAMES or _SYMBOL.match(tok.string) or (nxt == "=" and not tok.string.startswith("_"))
        ):
            continue
        if tok.type == tokenize.OP and tok.string in _EXPR_OPS:
            continue
        raise refuse(f"shape expression {expr[:60]!r} contains {tok.string!r}, which sympy would evaluate as Python")


@contextlib.contextmanager
def _pickle_free_loading() -> Iterator[None]:
    """During torch.export.load: ``torch.load`` only with ``weights_only=True``; object unpicklers refuse.

    The archive was checked already; this is the second lock on the same door, in case a torch
    version reads an entry the check does not know. It patches module attributes, hence the lock.
    """
    import torch
    from torch.export.pt2_archive import _package

    real_load = torch.load

    def weights_only_load(*args: Any, **kwargs: Any) -> Any:
        kwargs["weights_only"] = True
        return real_load(*args, **kwargs)

    def refuse_objects(*_: Any, **__: Any) -> Any:
        raise ExplainError(f"a .pt2 entry asked for a Python-object unpickler, which is refused; {EXPORT_HINT}")

    class _NoPickle:
        loads = staticmethod(refuse_objects)

    export_log = logging.getLogger("torch.export")
    with _load_lock:
        saved = (torch.load, torch._C._pickle_load_obj, _package.pickle, export_log.level)
        # torch.export.load logs a traceback on stderr before its legacy fallback; the error we
        # raise says it in one line.
        export_log.setLevel(logging.CRITICAL)
        torch.load = weights_only_load
        torch._C._pickle_load_obj = refuse_objects
        _package.pickle = _NoPickle
        try:
            yield
        finally:
            torch.load, torch._C._pickle_load_obj, _package.pickle, level = saved
            export_log.setLevel(level)
