"""The checks a run config passes before anything runs or is written (docs/config.md).

``validate(sections)`` takes the loaded sections (``{name: dataclass}``, as ``asd.run_config.load_config``
returns them; that function calls it, and so does ``asd.jobs.plan.prepare_output_dir``) and raises one
``ConfigError`` holding every problem, one line each, naming the file, line and key:

- **models resolve**: ``testbed:<stage>`` names a committed stage; a local folder exists and holds a
  ``config.json``; a Qwen2.5 id names a published size; anything else has the form of a Hugging Face id
  (``owner/name``). The stages' vocabularies and tokenizers agree (``asd.models.loading.check_hierarchy``,
  which reads only ``config.json`` and ``tokenizer.json``).
- **stage indices in range** of the hierarchy's K stages (or the synthetic job's): ``policy.stage`` of
  ``single``/``fixed_depth``, ``cascade.regen_drafter`` (0..K−2 when γ > 0), ``policy.histogram`` of K entries,
  ``evaluation.fixed_depths`` (1..K−1).
- **sizes within bounds**: :data:`BOUNDS` (values) and :data:`LENGTHS` (list lengths), e.g.
  ``cascade.max_new_tokens`` ≤ 32,768 and below every stage's ``max_model_len``; ``jobs.num_samples`` ≤ 10⁸.
- **rules across fields and sections**: policy ``speculative`` needs ``cascade.gamma`` ≥ 1; γ > 0,
  temperature > 0 and ``speculative`` need backend ``hf``; a vLLM hierarchy fits one node; the SLURM
  warning signal comes before the time limit; the jobs step resolves to a function and its own checks
  pass (:data:`STEP_CHECKS`); sections a command needs are present (``require``).

Nothing here loads a model or writes a file.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from asd.config_loader import INT64_MAX, ConfigError, line_of, locator, short_repr, short_text, to_dict

# Value bounds, inclusive: path pattern → (min, max). ``*`` stands for one key, ``[]`` for any list index.
# Why these: far above any real run, far below what would exhaust memory or the scheduler.
BOUNDS: dict[str, tuple[float, float]] = {
    "cascade.max_new_tokens": (1, 32_768),  # tokens per response (Qwen2.5's context is 32k)
    "cascade.batch_size": (1, 4_096),
    "cascade.pool_size": (0, 65_536),  # prompts admitted together (0: one batch)
    "cascade.gamma": (0, 64),  # drafter lookahead, tokens
    "cascade.top_k": (0, 1_000_000),
    "cascade.temperature": (0, 100),
    "hierarchy.gpus_per_node": (1, 64),
    "hierarchy.stages[].max_model_len": (1, 1_048_576),  # tokens
    "hierarchy.stages[].tensor_parallel_size": (1, 64),
    "jobs.num_samples": (1, 100_000_000),
    "jobs.shards": (1, 10_000),  # array tasks (SLURM's MaxArraySize is often 1,001: see docs/config.md)
    "jobs.batch_size": (1, 65_536),
    "jobs.array_parallelism": (1, 10_000),
    "jobs.timeout_min": (1, 43_200),  # 30 days
    "jobs.max_num_timeout": (0, 100),
    "jobs.slurm_signal_delay_s": (0, 86_400),
    "jobs.cpus_per_task": (1, 1_024),
    "jobs.mem_gb": (0, 16_384),
    "jobs.gpus_per_task": (0, 64),
    "synthetic.batch": (1, 10_000_000),
    "synthetic.draws": (1, 1_024),
    "synthetic.batch_size": (1, 4_096),
    "synthetic.timing_repeats": (1, 100),
    "testbed.n_per_cell": (1, 100_000),
    "testbed.max_new_tokens": (1, 32_768),
    "testbed.batch_size": (1, 4_096),
    "training.steps": (1, 10_000_000),
    "training.batch_size": (1, 65_536),
    "training.max_len": (1, 1_048_576),
    "training.stages.*.steps": (1, 10_000_000),
    "training.stages.*.batch_size": (1, 65_536),
    "training.stages.*.hidden_size": (1, 65_536),
    "training.stages.*.num_hidden_layers": (1, 1_024),
    "training.stages.*.intermediate_size": (1, 1_048_576),
    "data.*.max_new_tokens": (1, 32_768),
    "data.*.num_fewshot": (0, 64),
    "sandbox.wall_s": (0, 3_600),
    "sandbox.cpu_s": (0, 3_600),
    "sandbox.memory_mb": (1, 1_048_576),
    "sandbox.file_size_mb": (1, 1_048_576),
    "sandbox.max_procs": (1, 4_096),
    "sandbox.max_files": (1, 65_536),
    "sandbox.tmpfs_mb": (1, 65_536),
    "sandbox.output_bytes": (1, 1 << 30),
    "sandbox.workers": (1, 1_024),
    "cost_profiling.prefill_tokens[]": (1, 1_048_576),
    "cost_profiling.decode_batch_sizes[]": (1, 4_096),
    "cost_profiling.decode_context": (1, 1_048_576),
    "cost_profiling.decode_steps": (1, 100_000),
    "cost_profiling.warmup": (0, 1_000),
    "cost_profiling.repeats": (1, 10_000),
    "*.seed": (0, INT64_MAX),  # seeds feed numpy generators: non-negative
    "data.fewshot_seed": (0, INT64_MAX),
    "evaluation.seeds[]": (0, INT64_MAX),
    "evaluation.samples": (1, 1_000_000),  # prompts per dataset and seed
    "evaluation.shards": (1, 10_000),  # shards per cell
    "evaluation.speculative_gamma": (1, 64),
    "evaluation.sampling_temperature": (0, 100),
    "evaluation.stand_in.samples": (1, 1_000_000),
    "evaluation.stand_in.shards": (1, 10_000),
    "evaluation.stand_in.max_new_tokens": (1, 32_768),
    "evaluation.stand_in.max_prompt_tokens": (1, 1_048_576),
}
# List lengths, inclusive: path → (min, max).
LENGTHS: dict[str, tuple[int, int]] = {
    "hierarchy.stages": (2, 16),
    "synthetic.stages": (2, 16),
    "synthetic.lambdas": (1, 1_000),
    "evaluation.lambdas": (1, 1_000),
    "evaluation.seeds": (1, 1_000),
    "evaluation.ablation_lambdas": (0, 1_000),
    "evaluation.frontier_lambdas": (0, 1_000),
    "evaluation.starts": (1, 16),
    "evaluation.taus": (0, 1_000),
    "evaluation.confidence_taus": (0, 1_000),
    "pipeline.steps": (1, 100),
    "policy.histogram": (2, 16),
    "cost_profiling.prefill_tokens": (1, 100),
    "cost_profiling.decode_batch_sizes": (1, 100),
    "jobs.setup": (0, 1_000),
}
MAX_SYNTHETIC_CELLS = 50_000_000  # synthetic.batch × draws × stages: 400 MB per float64 array
MAX_PRINTED_ERRORS = 20

# jobs.step → "module:function"(config) -> list of (path, message): the step's own rules.
STEP_CHECKS: dict[str, str] = {"asd.pipeline:testbed_cascade": "asd.pipeline:check_testbed_config"}

QWEN25_SIZES = ("0.5b", "1.5b", "3b", "7b", "14b", "32b", "72b")
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]{0,95}(/[A-Za-z0-9][\w.-]{0,95})?")
_DEVICE = re.compile(r"auto|cpu|cuda(:\d{1,3})?")

Err = Callable[[str, str], None]  # (dotted path, message)


def validate(
    sections: Mapping[str, Any],
    source: str | Path | None = None,
    lines: Mapping[str, int] | None = None,
    require: Mapping[str, str] | None = None,
) -> None:
    """Every check of the module docstring; ConfigError with one line per problem (file, line, key).

    ``require``: section → why the caller needs it. ``lines``: path → line; read from ``source`` when
    omitted and there is something to report."""
    problems: list[tuple[str, str]] = []

    def err(path: str, msg: str) -> None:
        problems.append((path, msg))

    for name, why in (require or {}).items():
        if name not in sections:
            err("", f"missing section {name!r} ({why})")
    _bounds(sections, err)
    _hierarchy(sections, err)
    _policy_and_cascade(sections, err)
    _jobs(sections, err)
    _others(sections, err)
    if not problems:
        return
    src = str(source) if source is not None else None
    if lines is None and src is not None:
        lines = _read_lines(src)
    where = locator(src, lines)
    msgs = [f"{where(p)}: {m}" if p else f"{src or 'config'}: {m}" for p, m in _sorted(problems, lines)]
    raise ConfigError(*msgs)


def _sorted(problems: list[tuple[str, str]], lines: Mapping[str, int] | None) -> list[tuple[str, str]]:
    if not lines:
        return problems
    return sorted(problems, key=lambda pm: line_of(lines, pm[0]) or 0)


def _read_lines(src: str) -> Mapping[str, int] | None:
    from asd.config_yaml import read_doc

    try:
        return read_doc(src).lines
    except ConfigError:
        return None


# ----------------------------------------------------------------------------- bounds


def _pattern(p: str) -> re.Pattern:
    rx = re.escape(p).replace(r"\[\]", r"\[\d+\]").replace(r"\*", r"[^.\[\]]+")
    return re.compile(rx)


_BOUND_RX = [(_pattern(p), lo_hi) for p, lo_hi in BOUNDS.items()]
_LENGTH_RX = [(_pattern(p), lo_hi) for p, lo_hi in LENGTHS.items()]


def _walk(value: Any, path: str) -> Iterator[tuple[str, Any]]:
    yield path, value
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _walk(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _walk(v, f"{path}[{i}]")


def _fmt(x: float) -> str:
    return f"{x:,}" if isinstance(x, int) or (float(x).is_integer() and abs(x) < 1e15) else f"{x:g}"


def _bounds(sections: Mapping[str, Any], err: Err) -> None:
    for name, sec in sections.items():
        for path, v in _walk(to_dict(sec), name):
            if isinstance(v, list):
                for rx, (nmin, nmax) in _LENGTH_RX:
                    if rx.fullmatch(path) and not nmin <= len(v) <= nmax:
                        err(path, f"{len(v):,} entries; allowed: {nmin:,} to {nmax:,} (docs/config.md)")
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                continue
            for rx, (lo, hi) in _BOUND_RX:
                if rx.fullmatch(path):
                    if v > hi:
                        err(path, f"{short_repr(v)} is above the limit {_fmt(hi)} (docs/config.md)")
                    elif v < lo:
                        err(path, f"{short_repr(v)} is below the minimum {_fmt(lo)}")
                    break


# ----------------------------------------------------------------------------- models


def _looks_like_path(s: str) -> bool:
    return s.startswith(("/", "./", "../", "~", ".\\")) or "\\" in s or s.count("/") > 1 or s.endswith("/")


def model_problem(model: str) -> str | None:
    """Why ``model`` (a stage's ``model``) resolves to nothing, or None. Reads no weights."""
    if model.startswith("testbed:"):
        from asd.testbed.weights import FILES, WEIGHTS_DIR, stages

        stage = model[len("testbed:") :]
        known = stages()
        if stage not in known:
            return f"unknown testbed stage {short_repr(stage)}; valid: " + ", ".join(f"testbed:{s}" for s in known)
        missing = [f for f in FILES if not (WEIGHTS_DIR / stage / f).is_file()]
        if missing:
            return f"testbed stage {stage} lacks {', '.join(missing)} (reinstall asd or run asd testbed train)"
        return None
    p = Path(model).expanduser()
    if p.is_dir():
        return None if (p / "config.json").is_file() else f"folder {short_repr(model)} holds no config.json"
    if p.exists():
        return f"{short_repr(model)} is a file; a model is a folder (with config.json) or a Hugging Face id"
    if _looks_like_path(model):
        return f"no such model folder {short_repr(model)}"
    if not _HUB_ID.fullmatch(model) or "--" in model or ".." in model:
        return (
            f"{short_repr(model)} is neither testbed:<stage>, an existing model folder nor a Hugging Face id "
            "(owner/name)"
        )
    name = model.rsplit("/", 1)[-1].lower()
    if name.startswith("qwen2.5-"):
        size = name[len("qwen2.5-") :].split("-")[0]
        if re.fullmatch(r"\d+(\.\d+)?b", size) and size not in QWEN25_SIZES:
            return f"Qwen2.5 has no {size.upper()} model; published sizes: {', '.join(s.upper() for s in QWEN25_SIZES)}"
    return None


def _tokenizer_problem(tok: str) -> str | None:
    p = Path(tok).expanduser()
    if p.is_dir():
        if any((p / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json", "vocab.json")):
            return None
        return f"folder {short_repr(tok)} holds no tokenizer (tokenizer.json or tokenizer_config.json)"
    if p.exists() or _looks_like_path(tok) or not _HUB_ID.fullmatch(tok):
        return f"no such tokenizer folder {short_repr(tok)}"
    return None


def _hierarchy(sections: Mapping[str, Any], err: Err) -> None:
    h = sections.get("hierarchy")
    if h is None:
        return
    bad = 0
    for i, st in enumerate(h.stages):
        why = model_problem(st.model)
        if why:
            err(f"hierarchy.stages[{i}].model", why)
            bad += 1
    if h.tokenizer is not None and (why := _tokenizer_problem(h.tokenizer)):
        err("hierarchy.tokenizer", why)
        bad += 1
    if not _DEVICE.fullmatch(h.device):
        err("hierarchy.device", f"invalid device {short_repr(h.device)}; valid: auto, cpu, cuda, cuda:N")
    if h.backend == "vllm" and h.total_gpus() > h.gpus_per_node:
        jobs = sections.get("jobs")
        if jobs is None or jobs.gpus_per_task is None:
            err(
                "hierarchy.stages",
                f"the stages need {h.total_gpus()} GPUs (sum of tensor_parallel_size) on one node; "
                f"gpus_per_node is {h.gpus_per_node}",
            )
    if not bad:
        from asd.models.loading import check_hierarchy

        try:
            check_hierarchy(h)
        except (ValueError, OSError) as e:
            err("hierarchy.stages", short_text(str(e)))
        except (KeyError, TypeError) as e:  # a config.json without vocab_size, a tokenizer.json of another shape
            err("hierarchy.stages", f"a stage's config.json or tokenizer.json is unreadable ({type(e).__name__}: {e})")


# ----------------------------------------------------------------------------- policy, cascade


def num_stages(sections: Mapping[str, Any]) -> int | None:
    """K: the hierarchy's stages, else the synthetic job's, else None."""
    if "hierarchy" in sections:
        return len(sections["hierarchy"].stages)
    if "synthetic" in sections:
        return len(sections["synthetic"].stages)
    return None


def _policy_and_cascade(sections: Mapping[str, Any], err: Err) -> None:
    from asd.cascade import CascadeConfig

    K = num_stages(sections)
    pol = sections.get("policy")
    if pol is not None and K is not None:
        if pol.name in ("single", "fixed_depth") and not (pol.stage == -1 or 0 <= pol.stage < K):
            err("policy.stage", f"stage {pol.stage} out of range for {K} stages; valid: 0..{K - 1} or -1 (the last)")
        if pol.histogram is not None and len(pol.histogram) != K:
            err("policy.histogram", f"{len(pol.histogram)} entries; the hierarchy has K={K} stages: give K weights")
        if pol.start >= K:
            err("policy.start", f"start {pol.start} out of range for {K} stages; valid: 0..{K - 1}")
    ev = sections.get("evaluation")
    if ev is not None and K is not None:
        bad = [d for d in ev.fixed_depths if not 1 <= d < K]
        if bad:
            err("evaluation.fixed_depths", f"depths {bad} out of range for {K} stages; valid: 1..{K - 1}")
        bad = [m for m in ev.starts if m > K - 2]
        if bad:
            err("evaluation.starts", f"starts {bad} out of range for {K} stages; valid: 0..{K - 2}")
    h = sections.get("hierarchy")
    if h is None:  # the cascade runs only over a hierarchy
        return
    assert K is not None
    casc = sections.get("cascade", CascadeConfig())
    if casc.gamma > 0 and not 0 <= casc.regen_drafter < K - 1:
        err("cascade.regen_drafter", f"regen_drafter {casc.regen_drafter} out of range; valid: 0..{K - 2} (γ > 0)")
    if pol is not None and pol.name == "speculative" and casc.gamma < 1:
        err("policy.name", "policy 'speculative' needs cascade.gamma >= 1 (the drafter's lookahead)")
    if h.backend != "hf":
        needs = [
            w
            for w, on in (
                ("cascade.gamma > 0", casc.gamma > 0),
                ("cascade.temperature > 0", casc.temperature > 0),
                ("policy 'speculative'", pol is not None and pol.name == "speculative"),
            )
            if on
        ]
        if needs:
            verb = "need" if len(needs) > 1 else "needs"
            err("hierarchy.backend", f"{' and '.join(needs)} {verb} backend 'hf' (backend {h.backend!r} cannot)")
    ctx = min(s.max_model_len for s in h.stages)
    if casc.max_new_tokens >= ctx:
        err(
            "cascade.max_new_tokens" if "cascade" in sections else "hierarchy.stages",
            f"max_new_tokens {casc.max_new_tokens:,} leaves no room for a prompt: the smallest "
            f"max_model_len of the stages is {ctx:,}",
        )
    tb = sections.get("testbed")
    if tb is not None and tb.max_new_tokens >= ctx:
        err("testbed.max_new_tokens", f"{tb.max_new_tokens:,} leaves no room for a prompt: max_model_len {ctx:,}")


# ----------------------------------------------------------------------------- jobs


def _jobs(sections: Mapping[str, Any], err: Err) -> None:
    from asd.registry import import_spec

    job = sections.get("jobs")
    if job is None:
        return
    if not job.output_dir.strip():
        err("jobs.output_dir", "must name a folder")
    elif Path(job.output_dir).exists() and not Path(job.output_dir).is_dir():
        err("jobs.output_dir", f"{short_repr(job.output_dir)} exists and is not a folder")
    if job.executor == "slurm" and job.slurm_signal_delay_s >= 60 * job.timeout_min:
        err(
            "jobs.slurm_signal_delay_s",
            f"{job.slurm_signal_delay_s} s: the checkpoint signal must come before the time limit "
            f"(timeout_min {job.timeout_min} = {60 * job.timeout_min} s)",
        )
    for key in ("step", "evaluate_step"):
        spec = getattr(job, key)
        if spec is None:
            continue
        try:
            fn = import_spec(spec, "step")
        except ValueError as e:
            err(f"jobs.{key}", short_text(str(e)))
            continue
        except Exception as e:  # the step's module fails to import: say so, never a traceback
            err(f"jobs.{key}", f"importing {short_repr(spec)} failed: {type(e).__name__}: {short_text(str(e))}")
            continue
        if not callable(fn):
            err(f"jobs.{key}", f"step {short_repr(spec)} is not a function")
            continue
        check = STEP_CHECKS.get(spec)
        if check:
            for path, msg in import_spec(check, "step check")(sections):
                err(path, msg)
    for k, v in job.step_options.items():
        if not math.isfinite(v):
            err(f"jobs.step_options.{k}", f"{v} is not a finite number")


def _others(sections: Mapping[str, Any], err: Err) -> None:
    syn = sections.get("synthetic")
    if syn is not None:
        cells = syn.batch * syn.draws * len(syn.stages)
        if cells > MAX_SYNTHETIC_CELLS:
            err(
                "synthetic.batch",
                f"batch × draws × stages = {cells:,} predictor outputs; at most {MAX_SYNTHETIC_CELLS:,} "
                "(memory: 8 bytes each, several arrays)",
            )
    for name in ("testbed", "training"):
        sec = sections.get(name)
        if sec is not None and not _DEVICE.fullmatch(sec.device):
            err(f"{name}.device", f"invalid device {short_repr(sec.device)}; valid: auto, cpu, cuda, cuda:N")
