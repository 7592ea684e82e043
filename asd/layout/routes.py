"""Route files: what a cascade run decided and how many tokens each call moved, read from its HDF5 traces.

A route file (JSON, ``ROUTES_SCHEMA_VERSION``) holds, per sample of the run, in sample-id order::

    sample_id     [N] int      the trace's sample ids
    prompt_len    [N] int      prompt tokens
    route         [N] list     stages visited, in order: the drafting stage, then each stage it jumped to
    draft_len     [N] list     tokens of the response held after each stage of the route (traces' draft_len)
    accepted_len  [N] list     tokens of the incoming response each stage of the route accepted (0 for the first)
    batch         [N] int      the cascade batch the sample ran in (0, 1, ...)

plus ``stages`` (the run's model names), ``source`` (the trace file, its revision, creation time, run config
and fingerprint), ``decision_mix`` (samples per route) and this file's own provenance.

Batches are not a trace column: they follow from the run config the traces carry. A shard holds a contiguous
range of sample ids (``asd.jobs.plan.shard_ranges``); its step is called on ``jobs.batch_size`` ids at a time,
and the cascade cuts each call into windows of ``cascade.pool_size`` rows (``cascade.batch_size`` when 0); so
batches are those cuts, in order (asd.layout.schedule cuts their stage calls at ``cascade.batch_size``). This
holds for a run that was not interrupted (a resumed shard restarts its batches where it stopped).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np

ROUTES_SCHEMA_VERSION = 1
REPLAY_LABEL = (
    "replay: routes, token counts and batch sizes recorded by a cascade run, replayed on random weights "
    "(random weights cannot produce real acceptance)"
)


def recorded_batches(sample_ids: np.ndarray, config: dict) -> np.ndarray:
    """[N] int: the cascade batch of every sample id (the module docstring says how); ValueError when the run
    config lacks a section it needs or ids are missing."""
    from asd.jobs.plan import shard_ranges

    try:
        jobs, cascade = config["jobs"], config["cascade"]
        n, shards, step_batch, rows = (
            int(jobs["num_samples"]),
            int(jobs["shards"]),
            int(jobs["batch_size"]),
            int(cascade.get("pool_size") or cascade["batch_size"]),
        )
    except (KeyError, TypeError) as e:
        raise ValueError(
            f"the traces' run config lacks {e} (needs jobs.num_samples/shards/batch_size and cascade.batch_size)"
        ) from None
    want = np.arange(n)
    if sample_ids.shape != want.shape or not np.array_equal(sample_ids, want):
        raise ValueError(
            f"the traces hold {sample_ids.size} sample ids, the run planned {n} (0..{n - 1}): batches follow "
            "from a complete run only (merge every shard first)"
        )
    batch = np.empty(n, np.int64)
    b = 0
    for start, stop in shard_ranges(n, shards):
        for a in range(start, stop, step_batch):
            for c in range(a, min(a + step_batch, stop), rows):
                batch[c : min(c + rows, a + step_batch, stop)] = b
                b += 1
    return batch


def sample_route(ran: np.ndarray, decision: np.ndarray) -> list[int]:
    """Stages visited by one sample, in order: ran [K] bool, decision [K] int (STOP −1, NOT_RUN −2, or the next
    stage). ValueError when the decisions do not chain through exactly the stages that ran."""
    started = np.flatnonzero(ran)
    if started.size == 0:
        raise ValueError("no stage ran")
    route = [int(started[0])]
    while decision[route[-1]] >= 0:
        nxt = int(decision[route[-1]])
        if nxt <= route[-1] or len(route) > ran.size:
            raise ValueError(f"decision {nxt} at stage {route[-1]} does not move up the hierarchy")
        route.append(nxt)
    if sorted(route) != started.tolist():
        raise ValueError(f"decisions chain through stages {route}, but stages {started.tolist()} ran")
    return route


def routes_from_traces(path: str | Path) -> dict:
    """The route file's content for the trace file ``path`` (asd.traces, any reader checks included)."""
    from asd.traces import read_traces

    tr = read_traces(path)
    d, attrs = tr.data, tr.attrs
    config = attrs.get("config") or {}
    cascade, policy = config.get("cascade") or {}, config.get("policy") or {}
    if int(cascade.get("gamma", 0)) > 0 or policy.get("name") == "speculative":
        raise ValueError(
            f"{path}: the run regenerated with a drafter's lookahead (gamma {cascade.get('gamma')}, policy "
            f"{policy.get('name')!r}); the replay models plain regeneration (gamma 0) only"
        )
    ids = np.asarray(d["sample_id"], np.int64)
    batch = recorded_batches(ids, config)
    routes, drafts, accepted = [], [], []
    for i in range(ids.size):
        try:
            r = sample_route(np.asarray(d["ran"][i]), np.asarray(d["decision"][i]))
        except ValueError as e:
            raise ValueError(f"{path}: sample {int(ids[i])}: {e}") from None
        routes.append(r)
        drafts.append([int(d["draft_len"][i, k]) for k in r])
        accepted.append([int(d["accepted_len"][i, k]) for k in r])
        check_hops(drafts[-1], accepted[-1], f"{path}: sample {int(ids[i])}")
    for b in np.unique(batch):
        first = {routes[i][0] for i in np.flatnonzero(batch == b)}
        if len(first) != 1:
            raise ValueError(f"{path}: batch {int(b)} drafted on stages {sorted(first)}; a batch drafts on one stage")
    return {
        "schema_version": ROUTES_SCHEMA_VERSION,
        "label": REPLAY_LABEL,
        "stages": list(attrs.get("models") or [f"s{k}" for k in range(d["ran"].shape[1])]),
        "source": {
            "traces": str(path),
            "git_revision": attrs.get("git_revision"),
            "created_utc": attrs.get("created_utc"),
            "run_fingerprint": attrs.get("run_fingerprint"),
            "config": config,
        },
        "decision_mix": decision_mix(routes),
        "samples": {
            "sample_id": ids.tolist(),
            "prompt_len": [int(x) for x in d["prompt_len"]],
            "route": routes,
            "draft_len": drafts,
            "accepted_len": accepted,
            "batch": batch.tolist(),
        },
    }


def decision_mix(routes: list[list[int]]) -> dict[str, int]:
    """Samples per route, e.g. {"0>3": 160}: stage indices joined by '>' (most frequent first)."""
    return dict(Counter(">".join(map(str, r)) for r in routes).most_common())


def save_routes(routes: dict, path: str | Path) -> Path:
    """Write a route file with this process's provenance (atomic)."""
    from asd.provenance import provenance

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(json.dumps(dict(routes, provenance=provenance()), indent=1) + "\n")
    tmp.replace(p)
    return p


def load_routes(path: str | Path) -> dict:
    """Read a route file; errors name the file (missing, not JSON, another schema, inconsistent columns)."""
    from asd.costs_io import read_json

    p = Path(path)
    data = read_json(p, "route file")
    if data.get("schema_version") != ROUTES_SCHEMA_VERSION:
        raise ValueError(
            f"{p}: route file schema_version {data.get('schema_version')!r}, expected {ROUTES_SCHEMA_VERSION}"
        )
    s = data.get("samples") or {}
    cols = ("sample_id", "prompt_len", "route", "draft_len", "accepted_len", "batch")
    lens = {c: len(s.get(c, [])) for c in cols}
    if len(set(lens.values())) != 1 or not lens["sample_id"]:
        raise ValueError(f"{p}: sample columns of unequal or zero length: {lens}")
    for i, (r, dl, al) in enumerate(zip(s["route"], s["draft_len"], s["accepted_len"])):
        if not r or len(dl) != len(r) or len(al) != len(r):
            raise ValueError(f"{p}: sample {s['sample_id'][i]}: route, draft_len and accepted_len differ in length")
        check_hops(dl, al, f"{p}: sample {s['sample_id'][i]}")
    return data


def check_hops(draft_len: list[int], accepted_len: list[int], where: str) -> None:
    """ValueError unless every hop is one the cascade can record: a stage accepts at most the incoming response;
    a fully accepted response stands as is, a rejected one keeps the accepted prefix plus at least one token."""
    for h in range(1, len(draft_len)):
        n, a, new = draft_len[h - 1], accepted_len[h], draft_len[h]
        if not 0 <= a <= n or (a == n and new != n) or (a < n and new < a + 1):
            raise ValueError(
                f"{where}: hop {h}: accepted {a} of {n} incoming tokens and ended with {new} tokens, which the "
                "cascade cannot record (all accepted: the response stands; else accepted prefix + at least one)"
            )
