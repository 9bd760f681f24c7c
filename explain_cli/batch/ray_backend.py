"""`explain batch --backend ray`: the pending items on Ray actors, one model load per worker and job.

Each worker is an actor holding one :class:`explain_cli.api.Explainer` per job, created on the
job's first item that reaches it and reused for the rest. Items are handed out as actors free
up. Nothing assumes a shared file system: the driver reads each input file and the model file
(with an ONNX model's external data files) once into Ray's object store; a worker writes them to
a temp folder of its own to load them and removes it as soon as they are loaded, whether or not
the load worked (the JSON keeps the original paths), and sends back the output files as bytes
(:meth:`explain_cli.result.Explanation.files`), which the driver writes atomically exactly as the
local backend does. A worker that dies loses only its current item: that item is retried once
on a fresh actor, then recorded as failed.

Planning, skipping complete items, the summary and its rows are shared with the local backend
(:mod:`explain_cli.batch.run`, :mod:`explain_cli.batch.rows`). The module is not named ``ray``
so that ``import ray`` reads as the library everywhere.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections import OrderedDict, deque
from pathlib import Path
from typing import Any, Callable, cast

from explain_cli.batch.plan import Item
from explain_cli.batch.rows import Emit, Row, error_message, finish, mark_done
from explain_cli.errors import ExplainError, require_module

RETRIES = 1  # a worker that dies takes its item with it; the item gets one more try on a new actor
CONNECT_TIMEOUT_S = 5.0  # --address: how long to wait for the cluster to accept a connection
_INPUT_HINT = "pass image or tensor files (a shell glob works: DIR/*.png)"  # as load_input says it


def require_ray() -> Any:
    """The ``ray`` module, or a one-line ExplainError naming the extra to install."""
    return require_module("ray", "--backend ray needs Ray, which is not installed", "ray")


class Worker:
    """What one actor does: an Explainer per job (made on first use), inputs loaded from shipped bytes.

    Shipped files live on the worker only while they load: each lands in a fresh
    ``explain-ray-*`` temp folder, removed right after, so an actor that ends, or fails, leaves
    no copy of a model behind.
    """

    def __init__(self) -> None:
        import warnings

        import torch  # noqa: F401  (the slow imports happen while the driver ships files)

        import explain_cli.api  # noqa: F401
        from explain_cli.errors import ExplainWarning

        warnings.simplefilter("ignore", ExplainWarning)  # each item's warnings travel in its JSON

        self.explainers: dict[int, Any] = {}  # job index -> Explainer, or the message of its load failure
        self.inputs: OrderedDict = OrderedDict()  # (job, path) -> LoadedInput, or the message of its failure
        self.renames: dict[str, str] = {}  # worker-local path -> the driver's path, for error messages

    def run(self, task: dict[str, Any]) -> dict[str, Any]:
        """Explain one item; returns its files as bytes and its numbers, or ``{"error": message}``."""
        start = time.perf_counter()
        try:
            explainer = self._explainer(task)
            inputs = [self._input(task, path, ref) for path, ref in task["inputs"]]
            (expl,) = explainer.explain(inputs, **task["given"])
            return {"files": expl.files(), "scores": expl.scores[0], "evaluations": expl.evaluations,
                    "evaluation": expl.evaluation, "explain_s": expl.timing.get("total_s"),
                    "time_s": time.perf_counter() - start}
        except _Failed as failed:
            return {"error": failed.message, "time_s": time.perf_counter() - start}
        except Exception as exc:  # the item fails, the worker goes on
            return {"error": self._restore(error_message(exc)), "time_s": time.perf_counter() - start}

    def _explainer(self, task: dict[str, Any]) -> Any:
        job = task["job"]
        if job not in self.explainers:
            from explain_cli.api import Explainer

            spec, shipped = task["model"]
            folder = None if shipped is None else tempfile.mkdtemp(prefix="explain-ray-")
            try:
                source = spec if folder is None else self._copies(folder, shipped)
                explainer = Explainer(source, **task["load"])
                explainer.model.source = spec  # the JSON names the model as the config does
                self.explainers[job] = explainer
            except Exception as exc:  # every item of the job fails with this message, as locally
                self.explainers[job] = self._restore(error_message(exc))
            finally:
                if folder is not None:
                    shutil.rmtree(folder, ignore_errors=True)  # loaded into memory (or failed): the copy goes
        found = self.explainers[job]
        if isinstance(found, str):
            raise _Failed(found)
        return found

    def _input(self, task: dict[str, Any], path: str, ref: Any) -> Any:
        import dataclasses

        from explain_cli.inputs import load_input

        key = (task["job"], path)
        if key not in self.inputs:
            folder = tempfile.mkdtemp(prefix="explain-ray-")
            try:
                local = self._copies(folder, [(Path(path).name, path, ref)])
                channels = self.explainers[task["job"]].model.in_channels or 3
                loaded = load_input(local, channels=channels, max_pixels=task["values"]["max_pixels"])
                self.inputs[key] = dataclasses.replace(loaded, path=Path(path))  # the JSON keeps the driver's path
            except Exception as exc:
                self.inputs[key] = self._restore(error_message(exc))
            finally:
                shutil.rmtree(folder, ignore_errors=True)  # loaded into memory (or failed): the copy goes
            while len(self.inputs) > 32:
                self.inputs.popitem(last=False)
        found = self.inputs[key]
        if isinstance(found, str):
            raise _Failed(found)
        return found

    def _copies(self, folder: str, shipped: list[tuple[str, str, Any]]) -> str:
        """Write shipped ``(name, driver's path, ref)`` files under their own names (loaders go by suffix
        and stem; ONNX external data by relative name) in ``folder``; returns the first one's copy."""
        import ray

        from explain_cli.batch.ship import write_copies

        files = [(name, original, ray.get(ref)) for name, original, ref in shipped]
        return str(write_copies(Path(folder), files, self.renames.__setitem__))

    def _restore(self, message: str) -> str:
        for local, original in self.renames.items():
            message = message.replace(local, original)
        return message


class _Failed(Exception):
    def __init__(self, message: str) -> None:
        self.message = message


def run_pending(jobs: list[list[Item]], *, address: str | None, workers: int | None, emit: Emit,
                progress: Any) -> list[list[Row]]:
    """Run every job's pending items on Ray; one list of rows per job, in the order the items were given.

    Starts a local Ray (``workers`` CPUs, no dashboard, workers' output not forwarded) unless
    ``address`` names a cluster or Ray is already initialised in this process (then it is used
    as it is and left running).
    """
    rows: list[list[Row | None]] = [[None] * len(items) for items in jobs]
    queue = deque((j, k, 0) for j, items in enumerate(jobs) for k in range(len(items)))
    if not queue:
        return [[] for _ in jobs]
    ray = require_ray()
    started_here = not ray.is_initialized()
    if started_here:
        _init(ray, address, workers or min(len(queue), os.cpu_count() or 1))
    try:
        count = workers or max(1, min(len(queue), int(ray.cluster_resources().get("CPU", 1))))
        actor_class = ray.remote(num_cpus=1, max_restarts=0)(Worker)
        free = [actor_class.remote() for _ in range(min(count, len(queue)))]  # they start while files ship
        tasks = _ship(ray, jobs, rows, emit, progress)
        queue = deque(entry for entry in queue if rows[entry[0]][entry[1]] is None)  # not failed on the driver
        running: dict[Any, tuple[Any, tuple[int, int, int], float]] = {}
        while queue or running:
            while queue and free:
                j, k, attempt = queue.popleft()
                actor = free.pop()
                item = jobs[j][k]
                if progress is not None:
                    progress.describe(f"{item.job.name}: {Path(item.input_label).name} · {item.method}")
                running[actor.run.remote(tasks[j][k])] = (actor, (j, k, attempt), time.perf_counter())
            (ref,), _ = ray.wait(list(running), num_returns=1)
            actor, (j, k, attempt), submitted = running.pop(ref)
            item = jobs[j][k]
            try:
                result = ray.get(ref)
            except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError):
                free.append(actor_class.remote())  # the dead actor's place goes to a fresh one
                if attempt < RETRIES:
                    queue.appendleft((j, k, attempt + 1))
                    continue
                result = {"error": f"the Ray worker died while explaining this item ({attempt + 1} tries); "
                                   "see the Ray logs (ray logs --help)", "time_s": time.perf_counter() - submitted}
            except ray.exceptions.RayError as exc:
                free.append(actor)
                result = {"error": f"internal error: {type(exc).__name__}: {exc}", "time_s": time.perf_counter() - submitted}
            else:
                free.append(actor)
            rows[j][k] = finish(_row(item, result), emit, progress)
    finally:
        if started_here:
            ray.shutdown()
    return [list(cast("list[Row]", job_rows)) for job_rows in rows]  # every slot is filled: each item ends done or failed


def _init(ray: Any, address: str | None, cpus: int) -> None:
    """Start or join Ray without a word on stdout: no dashboard, no forwarded worker output, errors only."""
    import logging

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage-stats notice on start
    quiet = dict(log_to_driver=False, logging_level=logging.ERROR)
    if address is None:
        ray.init(num_cpus=cpus, include_dashboard=False, **quiet)
        return
    probe_address(address)  # Ray itself retries an address where nothing listens for minutes
    try:
        ray.init(address=address, **quiet)
    except (ConnectionError, ValueError) as exc:  # ValueError: ray:// without ray[client]
        raise _unreachable(address, str(exc)) from None


def probe_address(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Fail within ``timeout`` seconds, with one line, when nothing accepts a connection at ``address``.

    ``HOST:PORT`` and ``ray://HOST:PORT`` are probed with a TCP connection; ``auto`` is the address
    Ray would pick (``RAY_ADDRESS``, or the last ``ray start`` here), probed the same way.
    """
    import socket

    target = address.strip().removeprefix("ray://")
    if target == "auto":
        target = _auto_address() or ""
        if not target:
            return  # Ray finds none and says so at once
    host, sep, port = target.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ExplainError(f"--address {address}: expected auto, HOST:PORT or ray://HOST:PORT")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        reason = "no answer within {:g} s".format(timeout) if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        raise _unreachable(address, reason) from None


def _auto_address() -> str | None:
    """The address ``ray.init(address="auto")`` would join, or None when Ray finds none or cannot say."""
    try:
        from ray._private.services import canonicalize_bootstrap_address  # private: guarded
    except ImportError:
        return None
    try:
        return canonicalize_bootstrap_address("auto")
    except ConnectionError as exc:
        raise _unreachable("auto", str(exc)) from None
    except Exception:
        return None


def _unreachable(address: str, reason: str) -> ExplainError:
    reason = " ".join(reason.split())[:200]
    return ExplainError(f"--address {address}: cannot reach a Ray cluster there ({reason}); "
                        "start one with `ray start --head`, or leave --address out for a local Ray")


def _ship(ray: Any, jobs: list[list[Item]], rows: list[list[Row | None]], emit: Emit,
          progress: Any) -> list[list[dict[str, Any] | None]]:
    """Each item's task; each model and input file is read once on the driver and put in the object store.

    An input the driver cannot read fails its items here, with load_input's own message.
    """
    from explain_cli.fileio import require_file

    shipped: dict[Path, Any] = {}

    def put(path: Path, what: str, hint: str) -> Any:
        if path not in shipped:
            try:
                require_file(path, what, hint)
                shipped[path] = ray.put(path.read_bytes())
            except ExplainError as exc:
                shipped[path] = str(exc)
            except OSError as exc:
                shipped[path] = f"{what} {path}: cannot read it ({exc.strerror})"
        return shipped[path]

    tasks: list[list[dict[str, Any] | None]] = []
    for j, items in enumerate(jobs):
        tasks.append([None] * len(items))
        if not items:
            continue
        job, first = items[0].job, items[0].cfg
        model = (job.model, _ship_model(Path(job.model), put))
        load = {"weights": first.model.weights, "device": first.model.device, "seed": first.seed}
        for k, item in enumerate(items):
            refs = [(p, put(p, "input", _INPUT_HINT)) for p in item.inputs]
            failed = next((ref for _, ref in refs if isinstance(ref, str)), None)
            if failed is not None:
                rows[j][k] = finish(_row(item, {"error": failed, "time_s": 0.0}), emit, progress)
                continue
            # refs are nested in the task so a worker fetches them only when it has not loaded them yet
            tasks[j][k] = {"job": j, "model": model, "load": load, "values": item.cfg.values, "given": item.cfg.given,
                           "inputs": [(str(p), ref) for p, ref in refs]}
    return tasks


def _ship_model(path: Path, put: Callable[[Path, str, str], Any]) -> list[tuple[str, str, Any]] | None:
    """The model file and an ONNX model's external data as ``(name, path, ref)``, or None when the
    driver cannot read the model: the worker then looks for it itself and reports it as locally."""
    from explain_cli.batch.ship import model_files

    if not path.is_file():
        return None
    shipped = [(name, str(p), put(p, "model file", "")) for name, p in model_files(path)]
    if isinstance(shipped[0][2], str):
        return None
    return [entry for entry in shipped if not isinstance(entry[2], str)]


def _row(item: Item, result: dict[str, Any]) -> Row:
    """The summary row of a finished item; a done item's files are written here, on the driver."""
    from explain_cli.result import output_paths, write_files

    start = time.perf_counter()
    row = Row(item.job.name, item.input_label, item.method, "failed", error=result.get("error"))
    if row.error is None:
        try:
            files = result["files"]
            out = item.cfg.output.out
            paths = output_paths(out, item.stem, item.method, item.cfg.output.save_map, "curves" in files)
            mark_done(row, write_files(out, paths, files), result["scores"], result["evaluations"],
                      result.get("evaluation"), result.get("explain_s"))
        except Exception as exc:
            row.error = error_message(exc)
    row.time_s = round(result["time_s"] + time.perf_counter() - start, 3)
    return row
