"""Job steps that run the real pipeline: the cascade on the embedded testbed, scored.

A step is ``step(sample_ids [B] int64, config {section: dataclass}) -> records`` (asd.jobs.steps); the
jobs layer shards the sample ids, writes each batch of records to an HDF5 trace and merges the shards.

``testbed_cascade``: sample id ``i`` is one held-out testbed prompt. Its task and level cycle through the
20 (task, level) cells (``cell = i % 20``) and the prompt is drawn with seed ``(jobs.seed, i)``, so a
sample's prompt depends only on the run seed and its id: any sharding, rerun or resume gives the same
traces. The cascade runs under the config's ``policy``, ``predictor`` (and ``cascade``) sections; each output is scored
by the testbed's task metrics (score 1.0 / 0.0) and the dataset column reads ``testbed/<task>``.

Engines are loaded once per process (array tasks call the step once per batch).
"""

from __future__ import annotations

from typing import Any

import numpy as np

_ENGINES: dict[str, Any] = {}  # hierarchy fingerprint → (engines, tokenizer), cached per process


def testbed_prompts(sample_ids: np.ndarray, seed: int) -> list:
    """The testbed Example of every sample id ([B] int64): cell = id % 20, prompt seeded by (seed, id)."""
    from asd.testbed import tasks

    cells = [(t, lv) for t in tasks.TASKS for lv in tasks.LEVELS]
    out = []
    for sid in np.asarray(sample_ids, dtype=np.int64).tolist():
        task, level = cells[sid % len(cells)]
        ex = tasks.generate(task, 1, level, seed=seed * 1_000_003 + sid)[0]
        out.append(ex)
    return out


def _engines(hier) -> tuple[list, Any]:
    import json

    from asd.config_loader import to_dict
    from asd.models.loading import load_engines, load_tokenizer

    key = json.dumps(to_dict(hier), sort_keys=True)
    if key not in _ENGINES:
        _ENGINES[key] = (load_engines(hier), load_tokenizer(hier))
    return _ENGINES[key]


def check_testbed_config(config: dict[str, Any]) -> list[tuple[str, str]]:
    """The step's own rules, checked before a run starts (asd.config_check.STEP_CHECKS): (path, message)."""
    out = []
    if "hierarchy" not in config:
        out.append(("jobs.step", "step testbed_cascade needs a 'hierarchy' section (e.g. configs/testbed.yaml's)"))
    pol = config.get("policy")
    if pol is not None and pol.name == "oracle":
        out.append(
            ("policy.name", "policy 'oracle' needs every sample's outcome at every stage; testbed_cascade has none")
        )
    return out


def testbed_cascade(sample_ids: np.ndarray, config: dict[str, Any]) -> dict[str, Any]:
    """Run the cascade on the testbed prompts of ``sample_ids`` [B]; trace records (asd.traces schema)."""
    from asd.cascade import Cascade, CascadeConfig
    from asd.core.dp import PolicyConfig
    from asd.testbed import scoring
    from asd.testbed import tokenizer as tk

    if "hierarchy" not in config:
        raise ValueError("step testbed_cascade needs a 'hierarchy' section (e.g. the one of configs/testbed.yaml)")
    from asd.predictor.checkpoint import predictor_for

    job = config["jobs"]
    examples = testbed_prompts(sample_ids, job.seed)
    predictor = predictor_for(config)  # section `predictor` (default: the prior), checked before any engine loads
    engines, tok = _engines(config["hierarchy"])
    casc = Cascade(
        engines,
        config.get("cascade", CascadeConfig()),
        config.get("policy", PolicyConfig()),
        predictor=predictor,
        tokenizer=tok,
        eos_token_ids=(tk.EOS_ID,),
    )
    prompts = [tk.encode(tk.chat_prompt(e.prompt)) for e in examples]
    rec = casc.run(prompts, sample_ids=np.asarray(sample_ids, dtype=np.int64))
    texts = [str(t) for t in rec["text"]]
    rec["score"] = np.asarray(scoring.score(examples, texts), dtype=np.float32)
    rec["dataset"] = np.array([f"testbed/{e.task}" for e in examples], dtype=object)
    rec["feature_names"] = list(casc.feature_names)
    return rec
