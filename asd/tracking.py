"""Experiment tracking: every run leaves a record that reads as a methods section, says what it cost, and
can be reproduced (docs/tracking.md).

    from asd.tracking import track_experiment, log_section, log_artifact

    @track_experiment("lambda-sweep", config="configs/demo.yaml")
    def main():
        stats = ...
        log_section("Results", "DP against the baselines at λ = 2", data=stats["baselines"])
        log_artifact("runs/sweep/traces.h5", kind="traces")
        return stats                      # a returned dict is logged as the section "Results (returned)"

Every ``asd`` command runs under a tracker (named ``<command>[-<action>][-<config stem>]``). A run writes

- ``<log dir>/<name>_comprehensive.md``: environment, configuration, results with their statistics,
  ablations, resources, links to trace and report files, and how to reproduce it;
- ``<log dir>/<name>_data.json``: the same, structured, valid against ``asd/schemas/tracking.schema.json``.

The log dir is ``--log-dir`` (``asd --log-dir DIR ...``), else ``$ASD_LOG_DIR``, else ``logs/``. A record of
the same name already there is moved to ``<log dir>/history/`` first: nothing written earlier is lost. The
record is written when the run starts (status ``running``), every ``flush_every_s`` while it runs, and at the
end (``ok``, ``error``, ``failed`` or ``interrupted``): a run killed with SIGKILL still leaves its last one.

Tracking never takes a run down. A log dir that cannot be written, a tracker used twice, a tracker started
inside another one, NVML missing: each is one clear line on stderr (``asd tracking: ...``), also kept in the
record's ``notes``, and the run goes on.

SLURM arrays (``asd.jobs``): each task attempt writes a JSON record into ``<run folder>/logs/``
(:func:`track_shard`); the merge job (:func:`track_array`) sums them into one record and into the merged
trace file's ``resources`` attribute.
"""

from __future__ import annotations

import datetime as _dt
import functools
import json
import os
import re
import sys
import tempfile
import threading
import traceback
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from asd.resources import DEFAULT_INTERVAL_S, ResourceSampler, sum_resources

SCHEMA_VERSION = 1
LOG_DIR_ENV = "ASD_LOG_DIR"
DEFAULT_LOG_DIR = "logs"
SECTION_KINDS = ("results", "ablation", "configuration", "notes")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
STATUSES = ("running", "ok", "error", "failed", "interrupted")

_active: Tracker | None = None
_active_lock = threading.Lock()
_names_used: dict[str, str] = {}  # names tracked in this process → run id
_warned_untracked: list[str] = []  # log_section outside a run: said once per process

F = TypeVar("F", bound=Callable[..., Any])


def message(text: str) -> None:
    """One line on stderr, prefixed so it can be told apart from the run's own output."""
    print(f"asd tracking: {text}", file=sys.stderr, flush=True)


def resolve_log_dir(explicit: str | Path | None = None) -> Path:
    """``explicit``, else ``$ASD_LOG_DIR``, else ``logs/`` (relative to the working directory)."""
    return Path(explicit or os.environ.get(LOG_DIR_ENV) or DEFAULT_LOG_DIR)


def _utc(t: float | None = None) -> str:
    d = _dt.datetime.now(_dt.timezone.utc) if t is None else _dt.datetime.fromtimestamp(t, _dt.timezone.utc)
    return d.isoformat(timespec="seconds")


def _writable(folder: Path) -> str | None:
    """None if files can be created in ``folder`` (created if missing), else the reason."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".asd-probe-"):
            pass
        return None
    except OSError as e:
        return f"{type(e).__name__}: {e.strerror or e}"


def safe_name(text: str) -> str:
    """``text`` with every character outside ``[A-Za-z0-9._-]`` replaced by ``_`` (a file-name stem)."""
    s = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_.") or "run"
    return s if s[0].isalnum() else "run" + s


class Tracker:
    """One tracked run. Use as a context manager (or :func:`track_experiment`)::

        with Tracker("probe", configs=["configs/demo.yaml"]) as t:
            t.section("Results", data={"quality": 0.93})

    ``kind``: ``run`` (a command or a library function), ``shard`` (one attempt of an array task: JSON only,
    ``markdown=False``), ``array`` (the merge of an array: sums the shard records of ``array=(run folder,
    phase)``). ``interval_s``: resource sampling period; ``flush_every_s``: period of the record rewrites.
    """

    def __init__(
        self,
        name: str,
        log_dir: str | Path | None = None,
        *,
        kind: str = "run",
        argv: list[str] | None = None,
        configs: Iterable[str | Path] = (),
        interval_s: float = DEFAULT_INTERVAL_S,
        flush_every_s: float = 300.0,
        gpu: bool = True,
        markdown: bool = True,
        array: tuple[str | Path, str] | None = None,
    ):
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise ValueError(
                f"tracker name {name!r}: use letters, digits, '.', '_' and '-' (it names the log files), "
                "e.g. 'lambda-sweep'"
            )
        if kind not in ("run", "shard", "array"):
            raise ValueError(f"tracker kind {kind!r}; valid: 'run', 'shard', 'array'")
        self.name = name
        self.kind = kind
        self.log_dir: Path | None = resolve_log_dir(log_dir)
        self.argv = argv
        self.config_paths = [str(c) for c in configs]
        self.interval_s = interval_s
        self.flush_every_s = flush_every_s
        self.gpu = gpu
        self.markdown = markdown
        self.array = (Path(array[0]), array[1]) if array else None
        self.run_id = uuid.uuid4().hex[:12]
        self.state = "new"  # new → running → done; "ignored" / "joined": a second use, see start()
        self.sections: list[dict] = []
        self.artifacts: list[dict] = []
        self.notes: list[str] = []
        self.args: dict[str, Any] = {}
        self.seeds: dict[str, int] = {}
        self.status = "running"
        self.error: str | None = None
        self.paths: dict[str, Path | None] = {"markdown": None, "data": None}
        self._lock = threading.RLock()  # sections, artifacts, status (main thread) vs the record (sampler thread)
        self._write_lock = threading.Lock()  # one writer of the files at a time
        self._host: Tracker | None = None  # the running tracker a nested one hands its sections to
        self.sampler: ResourceSampler | None = None
        self.resources: dict | None = None
        self.started: str | None = None
        self.finished: str | None = None
        self.command: dict = {}
        self.git: dict = {}
        self.slurm: dict | None = None
        self.configs: list[dict] = []
        self.environment: dict = {}
        self.restore_env: tuple[str, str | None] | None = None  # (variable, value before) set back at finish

    # ------------------------------------------------------------------------------------------ lifecycle
    def start(self) -> Tracker:
        """Start sampling and write the first record. A second start, or a start inside another running
        tracker, prints why and does not track separately (the run goes on)."""
        global _active
        if self.state != "new":
            self._note(
                f"tracker {self.name!r} was already used in this process ({self.state}); a tracker records one "
                "run: this second use is not tracked separately (create a new Tracker, or call the decorated "
                "function again: each call is its own run)",
                loud=True,
            )
            if self.state == "running":
                self._host, self.state = self, "joined"
            return self
        with _active_lock:
            host = _active
            if host is None:
                _active = self
        if host is not None:
            self._host, self.state = host, "joined"
            host._note(
                f"tracker {self.name!r} started inside {host.name!r} (one tracker per process at a time: two "
                f"samplers would count the same resources twice); its sections go into {host.name!r}'s record",
                loud=True,
            )
            return self
        self.state = "running"
        self.started = _utc()
        if self.name in _names_used:
            self._note(
                f"{self.name!r} was already tracked in this process; its earlier record is moved to "
                f"{self.log_dir}/history",
            )  # recorded, not printed: a second run of one command in a process (tests, notebooks) is normal
        _names_used[self.name] = self.run_id
        self._choose_log_dir()
        self._collect_static()
        try:
            self.sampler = ResourceSampler(
                self.interval_s, gpu=self.gpu, on_tick=self._flush, tick_every_s=self.flush_every_s
            ).start()
            if self.sampler.gpus.warn:
                self._note(f"GPU accounting: {self.sampler.gpus.reason}", loud=True)
        except Exception as e:  # no /proc (not Linux), a broken NVML: record without resources
            self.sampler = None
            self._note(f"resource sampling could not start ({type(e).__name__}: {e}); resources not recorded", True)
        self._collect_environment()
        self._write()
        return self

    def finish(self, status: str = "ok", error: str | None = None) -> dict[str, Path | None]:
        """Stop sampling, write the final record; returns ``{"markdown": path, "data": path}`` (None: not written)."""
        global _active
        if self.state == "joined":
            self.state = "done"
            self._restore_env()
            return self.paths
        if self.state != "running":
            return self.paths
        assert status in STATUSES, status
        # stop (join) the sampler before taking the lock: its thread may be rewriting the record, which needs it
        resources = self.sampler.stop() if self.sampler is not None else None
        with self._lock:
            self.status, self.error = status, error
            self.resources = resources
            self.finished = _utc()
            from asd.environment import torch_info

            self.environment["torch"] = _safe(torch_info)
        self._write()
        self.state = "done"
        self._restore_env()
        with _active_lock:
            if _active is self:
                _active = None
        return self.paths

    def _restore_env(self) -> None:
        if self.restore_env is not None:
            key, old = self.restore_env
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old

    def __enter__(self) -> Tracker:
        return self.start()

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.finish(self.status if self.status != "running" else "ok", self.error)
        elif issubclass(exc_type, KeyboardInterrupt):
            self.finish("interrupted", "KeyboardInterrupt")
        elif issubclass(exc_type, SystemExit):  # sys.exit(0), or a requeue/preemption exit (submitit on USR2)
            code = getattr(exc, "code", None)
            self.finish("ok") if code in (0, None) else self.finish("interrupted", f"SystemExit({code!r})")
        else:
            text = "".join(traceback.format_exception_only(exc_type, exc)).strip()
            self.finish("failed", text + "\n" + "".join(traceback.format_tb(tb))[-4000:])

    def set_status(self, status: str, error: str | None = None) -> None:
        """The outcome the record will carry when the ``with`` block ends (e.g. ``error`` for bad input)."""
        if status not in STATUSES:
            raise ValueError(f"status {status!r}; valid: {', '.join(STATUSES)}")
        target = self._host or self
        target.status, target.error = status, error

    # ------------------------------------------------------------------------------------------ content
    def section(self, title: str, text: str = "", *, data: Any = None, kind: str = "results") -> None:
        """Add a section: a title, prose, and ``data`` (JSON-able: rendered as a table when flat enough)."""
        if kind not in SECTION_KINDS:
            raise ValueError(f"section kind {kind!r}; valid: {', '.join(SECTION_KINDS)}")
        target = self._host or self
        with target._lock:
            target.sections.append(
                {"title": str(title), "kind": kind, "text": str(text or ""), "data": _jsonable(data)}
            )

    def artifact(self, path: str | Path, kind: str = "output", note: str = "") -> None:
        """Link a file the run wrote or read (trace files, reports, cost models)."""
        target = self._host or self
        p = Path(path)
        with target._lock:
            target.artifacts.append(
                {
                    "path": str(p.resolve()),
                    "kind": kind,
                    "note": note,
                    "exists": p.exists(),
                    "bytes": p.stat().st_size if p.is_file() else None,
                }
            )

    def seed(self, name: str, value: int) -> None:
        (self._host or self).seeds[name] = int(value)

    def _note(self, text: str, loud: bool = False) -> None:
        self.notes.append(text)
        if loud:
            message(text)

    # ------------------------------------------------------------------------------------------ collection
    def _choose_log_dir(self) -> None:
        assert self.log_dir is not None
        why = _writable(self.log_dir)
        if why is None:
            return
        fallback = Path(tempfile.gettempdir()) / f"asd-logs-{os.getuid()}"
        why2 = _writable(fallback)
        if why2 is None:
            self._note(
                f"log folder {self.log_dir} is not writable ({why}); this run's record goes to {fallback} "
                f"instead and the run goes on (set --log-dir or {LOG_DIR_ENV} to a writable folder)",
                loud=True,
            )
            self.log_dir = fallback
        else:
            self._note(
                f"log folder {self.log_dir} is not writable ({why}), nor is {fallback} ({why2}): this run is "
                f"not recorded on disk; the run goes on (set --log-dir or {LOG_DIR_ENV})",
                loud=True,
            )
            self.log_dir = None

    def _collect_static(self) -> None:
        from asd import environment as env

        self.command = _safe(lambda: env.command_line(self.argv)) or {}
        self.git = _safe(env.git_state) or {"revision": "unknown", "dirty": False}
        self.slurm = _safe(env.slurm)
        self.configs = []
        for c in self.config_paths:
            try:
                rec = env.config_record(c)
            except OSError as e:
                self._note(f"config {c} not recorded ({e.strerror or e})")
                continue
            self.configs.append(rec)
            for k, v in rec["seeds"].items():
                self.seeds.setdefault(k, v)

    def _collect_environment(self) -> None:
        from asd import environment as env

        gpus = self.sampler.gpus if self.sampler is not None else None
        self.environment = _safe(lambda: env.environment(gpus)) or {}

    # ------------------------------------------------------------------------------------------ writing
    def record(self) -> dict:
        """The record as it stands (valid against the schema)."""
        with self._lock:
            res = self.resources
            if res is None and self.sampler is not None:
                res = self.sampler.snapshot()
            rec: dict[str, Any] = {
                "schema": "asd.tracking",
                "schema_version": SCHEMA_VERSION,
                "name": self.name,
                "run_id": self.run_id,
                "kind": self.kind,
                "status": self.status,
                "error": self.error,
                "started_utc": self.started,
                "finished_utc": self.finished,
                "command": {**self.command, "args": self.args},
                "configs": self.configs,
                "seeds": dict(self.seeds),
                "git": self.git,
                "environment": self.environment,
                "slurm": self.slurm,
                "resources": res,
                "array": self._array_part() if self.array else None,
                "sections": list(self.sections),
                "artifacts": list(self.artifacts),
                "notes": list(self.notes),
                "log_files": {k: (str(v) if v else None) for k, v in self._targets().items()},
            }
            return rec

    def _targets(self) -> dict[str, Path | None]:
        if self.log_dir is None:
            return {"markdown": None, "data": None}
        return {
            "markdown": self.log_dir / f"{self.name}_comprehensive.md" if self.markdown else None,
            "data": self.log_dir / f"{self.name}_data.json",
        }

    def _array_part(self) -> dict:
        assert self.array is not None
        folder, phase = self.array
        recs, bad = read_shard_records(folder, phase)
        part: dict[str, Any] = {
            "output_dir": str(folder.resolve()),
            "phase": phase,
            "attempts": len(recs),
            "tasks": len({r.get("shard_index") for r in recs}),
            "unreadable": bad,
            "records": [_attempt_row(r) for r in recs],
            "total": None,
        }
        parts = [r["resources"] for r in recs if r.get("resources")]
        if self.resources is not None:
            parts.append(self.resources)  # the merge job itself
        if parts:
            part["total"] = sum_resources(parts)
        return part

    def _flush(self) -> None:
        """Rewrite the record while the run goes on (called from the sampler thread)."""
        if self.state == "running":
            self._write()

    def _write(self) -> None:
        from asd.schema_check import load_schema, validate

        targets = self._targets()
        if targets["data"] is None:
            return
        rec = self.record()
        errors = validate(rec, load_schema("tracking"))
        if errors:  # a bug of ours: keep the record anyway (it is still the run's only one) and say so
            rec["notes"].append(f"record does not match the schema: {errors[:3]}")
            if not getattr(self, "_schema_warned", False):
                self._schema_warned = True
                message(f"{self.name}: record does not match the schema ({errors[0]}); written anyway")
        try:
            with self._write_lock:
                self._write_files(targets, rec)
        except OSError as e:
            if not getattr(self, "_write_warned", False):
                self._write_warned = True
                self._note(f"could not write the record to {self.log_dir} ({e}); the run goes on", loud=True)

    def _write_files(self, targets: dict[str, Path | None], rec: dict) -> None:
        assert targets["data"] is not None
        _archive_foreign(targets, self.run_id)
        _atomic_write(targets["data"], json.dumps(rec, indent=1, default=str) + "\n")
        if targets["markdown"] is not None:
            from asd.tracking_markdown import render

            _atomic_write(targets["markdown"], render(rec))
        self.paths = targets


def _safe(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except Exception:
        return None


def _jsonable(x: Any) -> Any:
    """``x`` as plain JSON types (numpy scalars and arrays, paths, dataclasses, inf/nan as strings)."""
    import math

    if x is None or isinstance(x, (bool, int, str)):
        return x
    if isinstance(x, float):
        return x if math.isfinite(x) else str(x)
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if hasattr(x, "tolist"):  # numpy arrays and scalars
        return _jsonable(x.tolist())
    if hasattr(x, "__dataclass_fields__"):
        from dataclasses import asdict

        return _jsonable(asdict(x))
    return str(x)


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _archive_foreign(targets: dict[str, Path | None], run_id: str) -> None:
    """Move a record of another run (other ``run_id``) at ``targets`` to ``history/`` before overwriting."""
    data = targets["data"]
    if data is None or not data.exists():
        return
    try:
        old = json.loads(data.read_text())
    except (OSError, ValueError):
        old = {}
    if old.get("run_id") == run_id:
        return
    stamp = safe_name(str(old.get("started_utc") or _utc(data.stat().st_mtime)).replace(":", ""))
    hist = data.parent / "history"
    hist.mkdir(exist_ok=True)
    for p in targets.values():
        if p is not None and p.exists():
            stem, suffix = p.name.rsplit("_", 1)
            dest = hist / f"{stem}_{stamp}-{old.get('run_id', 'unknown')}_{suffix}"
            os.replace(p, dest)


# ---------------------------------------------------------------------------------------------- module API


def current() -> Tracker | None:
    """The running tracker of this process, if any."""
    return _active


def log_section(title: str, text: str = "", *, data: Any = None, kind: str = "results") -> None:
    """Add a section to the running tracker's record (``kind``: results | ablation | configuration | notes).

    Outside a tracked run this prints that the section is not recorded and returns.
    """
    t = _active
    if t is None:
        if not _warned_untracked:
            _warned_untracked.append(title)
            message(f"log_section({title!r}) outside a tracked run: not recorded (use @track_experiment; said once)")
        return
    t.section(title, text, data=data, kind=kind)


def log_artifact(path: str | Path, kind: str = "output", note: str = "") -> None:
    """Link a file (traces, report, plot, cost model) from the running tracker's record; no-op outside one."""
    t = _active
    if t is not None:
        t.artifact(path, kind, note)


def track_experiment(
    name: str, *, log_dir: str | Path | None = None, config: str | Path | None = None, **tracker_kw
) -> Callable[[F], F]:
    """Decorator: each call of the function is one tracked run named ``name``; a returned dict becomes the
    section "Results (returned)". Exceptions propagate (the record says ``failed`` and why)."""
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ValueError(f"track_experiment name {name!r}: use letters, digits, '.', '_' and '-'")

    def deco(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            configs = [config] if config else []
            with Tracker(name, log_dir, configs=configs, **tracker_kw) as t:
                out = fn(*args, **kwargs)
                if isinstance(out, dict):
                    t.section("Results (returned)", f"return value of {fn.__qualname__}", data=out)
                return out

        return wrapper  # type: ignore[return-value]

    return deco


# ---------------------------------------------------------------------------------------------- the asd CLI


def command_name(args) -> str:
    """``<command>[-<action>][-<config stem>]`` of parsed ``asd`` arguments, e.g. ``run-demo``."""
    parts = [getattr(args, "command", None) or "asd"]
    for k, v in sorted(vars(args).items()):
        if (k.endswith("_command") or k == "action") and isinstance(v, str):
            parts.append(v)
    cfg = getattr(args, "config", None)
    if isinstance(cfg, str) and cfg:
        parts.append(Path(cfg).stem)
    return safe_name("-".join(parts))


def for_command(args, argv: list[str] | None) -> Tracker:
    """The tracker an ``asd`` command runs under (configs: ``--config`` / ``--hierarchy`` files that exist).

    Exports the log dir as an absolute ``$ASD_LOG_DIR`` so that the jobs this command starts (array tasks,
    merge) write their records next to it.
    """
    configs = []
    for attr in ("config", "hierarchy"):
        v = getattr(args, attr, None)
        if isinstance(v, str) and Path(v).is_file():
            configs.append(v)
    log_dir = resolve_log_dir(getattr(args, "log_dir", None))
    t = Tracker(command_name(args), log_dir, argv=["asd", *argv] if argv is not None else None, configs=configs)
    t.restore_env = (LOG_DIR_ENV, os.environ.get(LOG_DIR_ENV))  # put back when the command ends
    os.environ[LOG_DIR_ENV] = str(log_dir.resolve())
    t.args = {k: _jsonable(v) for k, v in vars(args).items() if k not in ("func", "log_dir")}
    return t


# ---------------------------------------------------------------------------------------------- SLURM arrays

SHARD_RECORD_GLOB = "{phase}-shard-*_data.json"


def _run_folder(config_path: str) -> Path | None:
    try:
        from asd.run_config import load_section

        return Path(load_section(config_path, "jobs").output_dir)
    except Exception:  # the task reports a bad config itself
        return None


def track_shard(config_path: str, index: int, phase: str = "generate") -> Tracker:
    """Tracker of one array task attempt: JSON record ``<run>/logs/<phase>-shard-<i>-<attempt>_data.json``."""
    folder = _run_folder(config_path)
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S")
    attempt = os.environ.get("SLURM_JOB_ID") or str(os.getpid())
    name = safe_name(f"{phase}-shard-{index:05d}-{stamp}-{attempt}")
    t = Tracker(
        name,
        folder / "logs" if folder is not None else None,
        kind="shard",
        configs=[config_path],
        markdown=False,
        flush_every_s=120.0,
    )
    t.args = {"config": config_path, "shard_index": index, "phase": phase}
    return t


def track_array(config_path: str, phase: str = "generate") -> Tracker:
    """Tracker of an array's merge job: its record sums every shard attempt's record (``array.total``)."""
    folder = _run_folder(config_path)
    name = safe_name(f"array-{folder.name if folder else 'run'}-{phase}")
    t = Tracker(name, kind="array", configs=[config_path], array=(folder, phase) if folder is not None else None)
    t.args = {"config": config_path, "phase": phase}
    return t


def read_shard_records(folder: str | Path, phase: str) -> tuple[list[dict], list[str]]:
    """The shard-attempt records of a run folder (sorted by shard, then start) and the files that failed the
    schema or could not be read."""
    from asd.schema_check import load_schema, validate

    schema = load_schema("tracking")
    recs, bad = [], []
    for p in sorted((Path(folder) / "logs").glob(SHARD_RECORD_GLOB.format(phase=phase))):
        try:
            rec = json.loads(p.read_text())
        except (OSError, ValueError) as e:
            bad.append(f"{p.name}: {e}")
            continue
        errs = validate(rec, schema)
        if errs:
            bad.append(f"{p.name}: {errs[0]}")
            continue
        rec["shard_index"] = rec["command"]["args"].get("shard_index")
        rec["_file"] = p.name
        recs.append(rec)
    recs.sort(key=lambda r: (r["shard_index"] if r["shard_index"] is not None else -1, r["started_utc"]))
    return recs, bad


def _attempt_row(r: dict) -> dict:
    res = r.get("resources") or {}
    gpu = res.get("gpu") or {}
    return {
        "file": r["_file"],
        "shard_index": r["shard_index"],
        "status": r["status"],
        "started_utc": r["started_utc"],
        "wall_s": res.get("wall_s"),
        "cpu_s": (res.get("cpu") or {}).get("total_s"),
        "peak_rss_bytes": (res.get("memory") or {}).get("peak_rss_bytes"),
        "gpu_hours": gpu.get("gpu_hours"),
        "energy_j": gpu.get("energy_j"),
        "slurm_job_id": (r.get("slurm") or {}).get("job_id"),
        "node": (r.get("slurm") or {}).get("node") or ((r.get("environment") or {}).get("os") or {}).get("hostname"),
    }


def array_attrs(folder: str | Path, phase: str) -> dict:
    """``{"resources": <sum of the shard records>}`` for the merged trace file (``None`` if there are none)."""
    recs, _ = read_shard_records(folder, phase)
    parts = [r["resources"] for r in recs if r.get("resources")]
    return {"resources": sum_resources(parts) if parts else None}


def annotate_h5(f) -> None:
    """Write the running tracker's resources so far as the ``resources`` attribute of an open h5py file
    (a shard's trace file just before it is closed); no-op outside a tracked run."""
    t = _active
    if t is None or t.sampler is None:
        return
    f.attrs["resources"] = json.dumps(t.sampler.snapshot(), sort_keys=True)
