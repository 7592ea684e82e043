"""Per-sample latency and the recorded call sequence of a cell, priced with a cost table (docs/analysis.md).

**Per-sample latency.** A cascade runs its samples in batches; ``batch_latency_s`` [N] is the wall-clock of
a sample's whole batch (first draft to last stop). The latency charged to a sample is its *batch share*,
``batch_latency_s / n_b`` (n_b = samples in its batch), so that the shares of a cell sum to the wall-clock
the cell spent and a ratio of summed shares over the same prompts is a ratio of wall-clock at the same
batch size (a throughput speedup). In a pooled window (docs/cascade.md "Pooled batches": a batch larger than
any of its calls) every sample would get the same batch share, whatever its route; there a sample is charged its
*call share* instead: each call's seconds split equally among its members, summed over the sample's calls, and
scaled so that the window's shares sum to its wall-clock (``"call_share"``: the time between calls — decisions,
features — is spread in proportion). Where ``batch_latency_s`` is missing (NaN) the share is the unscaled split
(``latency_method`` ``"stage_share"``).

**Calls.** Every stage call of a batch (a window when the cascade pooled, docs/cascade.md) is recovered from
the traces: stage k's members are the samples of
the batch with ``ran[:, k]``, split into calls by their recorded ``latency_s[:, k]`` (the cascade writes one
value, the call's wall time, for every member of one call). A call is a *generate* (the first stage a sample
ran: prefill over the prompt, then decode steps), a *verify* (a later stage: one pass over prompt + incoming
draft, then decoding the regenerated suffix) or, in cells of the two-model baseline, a *speculative* call
(the final stage generating, drafted by stage 0).

**Pricing** (``price_calls``), with a ``CostModel`` of K stages, for a call of B members:

- generate:  prefill(B · P) + (n − 1) · step(B) + overhead, P = the longest prompt, n = the longest output
  (the first token comes from the prefill);
- verify:    prefill(B · T) + r · step(B) + overhead, T = the longest prompt + incoming draft,
  r = the most tokens decoded after the pass, max(0, |y_m| − accepted − 1);
- speculative: target prefill(B · P) + ⌈d / γ⌉ · step_{K−1}(B), drafter prefill_0(B · P) + d · step_0(B),
  d = the most tokens drafted, γ the lookahead.

A batched pass over B rows of (padded) length T is priced as one pass over B·T tokens (the table's prefill is
measured at batch 1). GPU-seconds = seconds × the devices the stage runs on (``devices`` in the table's
measurement record; 1 where not recorded).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from asd.core.costs import CostModel

GENERATE, VERIFY, SPECULATIVE = 0, 1, 2
KIND_NAMES = ("generate", "verify", "speculative")


@dataclass
class Calls:
    """The stage calls of one cell, one entry per call (arrays [C]), and each sample's calls.

    batch [C] int64 batch id; stage [C] int (the model that ran; the target for speculative calls);
    kind [C] int (GENERATE/VERIFY/SPECULATIVE); size [C] members B; in_tokens [C] the longest input of a
    member (prompt, or prompt + incoming draft); steps [C] decode steps after the pass (generate: n − 1;
    verify: r; speculative: d, the tokens drafted); measured_s [C] recorded wall time of the call (s);
    member [N, K] int64 the call of sample i at stage k (−1: stage not run).
    """

    batch: np.ndarray
    stage: np.ndarray
    kind: np.ndarray
    size: np.ndarray
    in_tokens: np.ndarray
    steps: np.ndarray
    measured_s: np.ndarray
    member: np.ndarray

    def __len__(self) -> int:
        return int(self.batch.size)

    @classmethod
    def from_columns(cls, cols: dict, member: np.ndarray) -> Calls:
        """From array-likes named as the fields (``CALL_FIELDS``), cast to int64 (``measured_s``: float64)."""
        return cls(
            **{f: np.asarray(cols[f]).astype(np.float64 if f == "measured_s" else np.int64) for f in CALL_FIELDS},
            member=member,
        )


CALL_FIELDS = ("batch", "stage", "kind", "size", "in_tokens", "steps", "measured_s")


def batch_sizes(batch_id: np.ndarray) -> np.ndarray:
    """[N] number of samples sharing each sample's batch id."""
    _, inv, counts = np.unique(batch_id, return_inverse=True, return_counts=True)
    return counts[inv]


def pooled(calls: Calls, batch_id: np.ndarray) -> bool:
    """True when some batch holds more samples than any of its calls: a pooled window (docs/cascade.md)."""
    return bool(len(calls)) and int(batch_sizes(batch_id).max()) > int(calls.size.max())


def call_split(calls: Calls, per_call: np.ndarray) -> np.ndarray:
    """[N] each sample's equal split of every call it took part in, summed: per_call [C] (e.g. seconds)."""
    c = np.maximum(calls.member, 0)  # [N, K] call index (−1 → 0, masked below)
    share = np.asarray(per_call, np.float64)[c] / calls.size[c]
    return np.where(calls.member >= 0, share, 0.0).sum(1)


def sample_latency(data: dict[str, np.ndarray], calls: Calls | None = None) -> tuple[np.ndarray, str]:
    """([N] seconds charged to each sample, method): the batch share, the call share of a pooled window, or the
    stage share (module docstring)."""
    bid = np.asarray(data["batch_id"], np.int64)
    bl = np.asarray(data["batch_latency_s"], np.float64)
    if np.any(bid < 0):
        raise ValueError("traces record no batch (batch_id -1): the per-sample latency cannot be charged")
    calls = calls if calls is not None else recover_calls(data)
    if np.all(np.isfinite(bl)):
        if not pooled(calls, bid):
            return bl / batch_sizes(bid), "batch_share"
        split = call_split(calls, calls.measured_s)
        _, inv = np.unique(bid, return_inverse=True)
        tot = np.bincount(inv, weights=split)
        scale = np.divide(bl, tot[inv], out=np.ones_like(bl), where=tot[inv] > 0)
        return split * scale, "call_share"
    return call_split(calls, calls.measured_s), "stage_share"


def recover_calls(data: dict[str, np.ndarray], speculative: bool = False) -> Calls:
    """The calls of a cell from its trace columns (``ran``, ``latency_s``, ``batch_id``, ``prompt_len``,
    ``draft_len``, ``accepted_len``); ``speculative``: the cell ran the two-model baseline."""
    ran = np.asarray(data["ran"], bool)
    N, K = ran.shape
    lat = np.asarray(data["latency_s"], np.float64)
    bid = np.asarray(data["batch_id"], np.int64)
    plen = np.asarray(data["prompt_len"], np.int64)
    dlen = np.asarray(data["draft_len"], np.int64)
    acc = np.asarray(data["accepted_len"], np.int64)
    member = np.full((N, K), -1, np.int64)
    cols: dict[str, list] = {k: [] for k in ("batch", "stage", "kind", "size", "in_tokens", "steps", "measured_s")}
    # the latest stage each sample ran before k (−1: none), computed stage by stage
    prev = np.full(N, -1, np.int64)
    stages = [K - 1] if speculative else range(K)
    for k in stages:
        rows = np.flatnonzero(ran[:, k])
        if rows.size == 0:
            continue
        if speculative:
            kind = np.full(rows.size, SPECULATIVE)
            tin = plen[rows]
            steps = dlen[rows, 0]
        else:
            p = prev[rows]
            kind = np.where(p < 0, GENERATE, VERIFY)
            incoming = np.where(p >= 0, dlen[rows, np.maximum(p, 0)], 0)
            tin = plen[rows] + incoming
            steps = np.where(
                kind == GENERATE, np.maximum(0, dlen[rows, k] - 1), np.maximum(0, dlen[rows, k] - acc[rows, k] - 1)
            )
        # one call = members of one batch with one recorded wall time at this stage (and one kind)
        keys = np.stack([bid[rows].astype(np.float64), lat[rows, k], kind.astype(np.float64)], 1)
        uniq, inv = np.unique(keys, axis=0, return_inverse=True)
        inv = inv.ravel()
        C0 = sum(len(x) for x in cols["batch"])
        member[rows, k] = C0 + inv
        n = uniq.shape[0]
        size = np.bincount(inv, minlength=n)
        tmax = np.zeros(n, np.int64)
        smax = np.zeros(n, np.int64)
        np.maximum.at(tmax, inv, tin)
        np.maximum.at(smax, inv, steps)
        cols["batch"].append(uniq[:, 0].astype(np.int64))
        cols["stage"].append(np.full(n, k, np.int64))
        cols["kind"].append(uniq[:, 2].astype(np.int64))
        cols["size"].append(size.astype(np.int64))
        cols["in_tokens"].append(tmax)
        cols["steps"].append(smax)
        cols["measured_s"].append(uniq[:, 1])
        if not speculative:
            prev[rows] = k
    out = {k: (np.concatenate(v) if v else np.zeros(0)) for k, v in cols.items()}
    return Calls.from_columns(out, member)


def stage_devices(model: CostModel) -> np.ndarray:
    """[K] devices each stage of a cost table runs on (its measurement record's ``devices``; 1 if absent)."""
    st = (model.provenance.get("measured") or {}).get("stages") or []
    out = np.ones(model.num_stages, np.int64)
    for k, s in enumerate(st[: model.num_stages]):
        if isinstance(s, dict) and s.get("devices"):
            out[k] = int(s["devices"])
    return out


def price_calls(calls: Calls, model: CostModel, gamma: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """([C] estimated seconds, [C] estimated GPU-seconds) of every call under ``model`` (module docstring).

    gamma: the drafter's lookahead of speculative calls.
    """
    K = model.num_stages
    if len(calls) and int(calls.stage.max()) >= K:
        raise ValueError(f"the cost table has {K} stages; the run's calls use stage {int(calls.stage.max())}")
    dev = stage_devices(model)
    secs = np.zeros(len(calls))
    gpu = np.zeros(len(calls))
    for k in range(K):
        st = model.stages[k]
        m = calls.stage == k
        if not m.any():
            continue
        B = calls.size[m].astype(np.float64)
        step = st.decode(B)  # [c] seconds per decode step at each call's batch size
        pre = st.prefill(B * calls.in_tokens[m])
        kind = calls.kind[m]
        steps = calls.steps[m].astype(np.float64)
        s = np.where(kind == SPECULATIVE, pre + np.ceil(steps / max(1, gamma)) * step, pre + steps * step)
        s = s + st.overhead_s
        g = s * dev[k]
        if (kind == SPECULATIVE).any():  # the drafter (stage 0) runs beside the target
            d0 = model.stages[0]
            draft = d0.prefill(B * calls.in_tokens[m]) + steps * d0.decode(B) + d0.overhead_s
            draft = np.where(kind == SPECULATIVE, draft, 0.0)
            s = s + draft
            g = g + draft * dev[0]
        secs[m] = s
        gpu[m] = g
    return secs, gpu


def batch_share(calls: Calls, per_call: np.ndarray, batch_id: np.ndarray) -> np.ndarray:
    """[N] each sample's share of its batch's total of ``per_call`` [C] (e.g. estimated seconds); in a pooled
    window (``pooled``) its split of the calls it took part in (``call_split``), as ``sample_latency`` charges."""
    bid = np.asarray(batch_id, np.int64)
    if pooled(calls, bid):
        return call_split(calls, per_call)
    uniq, inv = np.unique(bid, return_inverse=True)
    tot = np.zeros(uniq.size)
    np.add.at(tot, np.searchsorted(uniq, calls.batch), per_call)
    return tot[inv] / batch_sizes(bid)


def gamma_of(attrs: dict, grid: dict, default: int = 4) -> tuple[int, str]:
    """The speculative lookahead γ of a cell: its traces' config (``cascade.gamma``), else the grid's
    ``evaluation.speculative_gamma``, else ``default``; returns (γ, where it came from)."""
    cfg = attrs.get("config") or {}
    g = (cfg.get("cascade") or {}).get("gamma") if isinstance(cfg, dict) else None
    if isinstance(g, int) and g > 0:
        return g, "traces config cascade.gamma"
    ev = (grid.get("config") or {}).get("evaluation") or {}
    g = ev.get("speculative_gamma") if isinstance(ev, dict) else None
    if isinstance(g, int) and g > 0:
        return g, "grid config evaluation.speculative_gamma"
    return default, f"default {default} (not recorded)"


def finite_or_none(x: float) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None
