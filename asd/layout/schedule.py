"""The cascade's call sequence rebuilt from a route file (asd.layout.routes), and the final stage alone's.

Per recorded batch (a window of the cascade: ``cascade.pool_size`` prompts, or one batch), in the order the
cascade ran them (docs/cascade.md, "The loop" and "Pooled batches"), each step in calls of at most the run's
``cascade.batch_size`` samples, in sample order:

1. **draft**: the first stage of the batch's routes generates: one prefill of the call's prompts (padded to the
   longest), then decode steps until every row has its recorded response (draft_len − 1 steps a row: the
   prefill gives the first token);
2. **verification** at each stage m that any route of the batch reaches, ascending (``hop`` h = 1, 2, ... in
   that order): the samples whose route reaches m, from whichever stage they come: one pass of M_m over
   prompt + incoming response (padded to the longest row; outputs at the last max(incoming) + 1 positions),
   then regeneration of the rejected suffixes by decode steps: a row that accepted a of its n incoming tokens
   and ends with n' tokens decodes n' − a − 1 steps (the pass gives M_m's token at the mismatch; none when it
   accepted everything).

Decode steps run in segments of equal batch size: the engine drops finished rows once at most half of the
rows it holds are still active (``HFSession.decode`` with ``release=True``), and so does this schedule.
The final stage alone, per batch and call: one prefill of the prompts, then the returned responses' lengths in decode
steps (an approximation for samples the cascade stopped early: their length is the smaller stage's).

Pure: numpy and the standard library; the cost table estimate reads ``asd.core.costs.CostModel``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from asd.core.routing import split_calls


@dataclass(frozen=True)
class Call:
    """One batched call of one stage: a pass over ``rows`` × ``tokens`` (outputs at the last ``keep``
    positions), then decode ``segments`` ((batch, steps), ...) from ``context`` filled slots per row."""

    batch: int  # recorded batch index
    hop: int  # 0 = the draft (or the alone run), h = h-th verification
    stage: int  # stage index 0..K-1
    kind: str  # "draft" | "verify" | "alone"
    rows: int  # sequences in the pass
    tokens: int  # tokens per row of the pass (the longest row)
    keep: int  # last positions whose outputs the pass needs
    context: int  # filled slots of the longest decoding row when decoding starts
    segments: tuple[tuple[int, int], ...]  # (batch size, steps) in order

    @property
    def decode_steps(self) -> int:
        return sum(n for _, n in self.segments)

    @property
    def max_slots(self) -> int:
        """Cache slots a row needs for this call."""
        return max(self.tokens, self.context + self.decode_steps + 1)


def decode_segments(steps: list[int], rows: int) -> tuple[tuple[int, int], ...]:
    """Decode steps as (batch size, steps) segments: ``steps`` [rows] per-row steps (0 = no decoding), the
    batch starting at ``rows`` and, before every step, shrinking to the active rows when at most half of the
    rows it holds are active (``HFSession.decode``'s rule).

    Example: steps [3, 1, 0, 0], rows 4 → 2 of 4 active: compact to 2; one step; 1 of 2 active: compact to 1;
    two steps: ((2, 1), (1, 2)).
    """
    left = np.asarray(steps, np.int64).copy()
    if left.size != rows or (left < 0).any():
        raise ValueError(f"steps must hold {rows} non-negative counts, got {left.tolist()}")
    held = rows
    out: list[list[int]] = []
    while (left > 0).any():
        active = int((left > 0).sum())
        if active * 2 <= held and held > 1:
            held = active
        if out and out[-1][0] == held:
            out[-1][1] += 1
        else:
            out.append([held, 1])
        left = np.maximum(left - 1, 0)
    return tuple((b, n) for b, n in out)


def call_size(routes: dict) -> int:
    """The most samples one stage call took: the run's ``cascade.batch_size`` (0: no limit, a batch per call)."""
    cascade = ((routes.get("source") or {}).get("config") or {}).get("cascade") or {}
    return int(cascade.get("batch_size") or 0)


def _generate_call(batch: int, stage: int, kind: str, prompt: np.ndarray, out_len: np.ndarray) -> Call:
    """A call that generates from scratch (the draft, or a stage alone): prompts [R] tokens, out_len [R] the
    responses' lengths (the prefill gives the first token; out_len − 1 decode steps a row)."""
    return Call(
        batch=batch,
        hop=0,
        stage=stage,
        kind=kind,
        rows=prompt.size,
        tokens=int(prompt.max()),
        keep=1,
        context=int(prompt[out_len > 1].max(initial=0)),
        segments=decode_segments(np.maximum(out_len - 1, 0).tolist(), prompt.size),
    )


def cascade_calls(routes: dict) -> list[Call]:
    """Every call of the recorded cascade run, in order (module docstring)."""
    s = routes["samples"]
    prompt = np.asarray(s["prompt_len"], np.int64)
    batch = np.asarray(s["batch"], np.int64)
    size = call_size(routes)
    out: list[Call] = []
    for b in sorted(set(batch.tolist())):
        idx = np.flatnonzero(batch == b)
        k0 = s["route"][idx[0]][0]
        for part in split_calls(idx, size):
            n0 = np.array([s["draft_len"][i][0] for i in part], np.int64)
            out.append(_generate_call(b, k0, "draft", prompt[part], n0))
        targets = sorted({m for i in idx for m in s["route"][i][1:]})
        for hop, m in enumerate(targets, 1):
            going = np.array([i for i in idx if m in s["route"][i][1:]], np.int64)
            for grp in split_calls(going, size):
                at = [s["route"][i].index(m) for i in grp]  # the position of m on each member's route
                incoming = np.array([s["draft_len"][i][h - 1] for i, h in zip(grp, at)])
                acc = np.array([s["accepted_len"][i][h] for i, h in zip(grp, at)])
                new = np.array([s["draft_len"][i][h] for i, h in zip(grp, at)])
                steps = np.maximum(new - acc - 1, 0)
                p = prompt[grp]
                out.append(
                    Call(
                        batch=b,
                        hop=hop,
                        stage=int(m),
                        kind="verify",
                        rows=grp.size,
                        tokens=int((p + incoming).max()),
                        keep=int(incoming.max()) + 1,
                        context=int((p + acc)[steps > 0].max(initial=0)),
                        segments=decode_segments(steps.tolist(), grp.size),
                    )
                )
    return out


def alone_calls(routes: dict, stage: int) -> list[Call]:
    """The same batches answered by ``stage`` alone (module docstring)."""
    s = routes["samples"]
    prompt = np.asarray(s["prompt_len"], np.int64)
    batch = np.asarray(s["batch"], np.int64)
    final_len = np.array([d[-1] for d in s["draft_len"]], np.int64)  # the returned response's length
    size = call_size(routes)
    out = []
    for b in sorted(set(batch.tolist())):
        for part in split_calls(np.flatnonzero(batch == b), size):
            out.append(_generate_call(b, stage, "alone", prompt[part], final_len[part]))
    return out


def call_summary(calls: list[Call], K: int) -> list[dict]:
    """Per stage: calls by kind, pass rows × tokens, decode steps (the replay's work, before any timing)."""
    rows = []
    for k in range(K):
        mine = [c for c in calls if c.stage == k]
        rows.append(
            {
                "stage": k,
                "calls": {kind: sum(c.kind == kind for c in mine) for kind in ("draft", "verify", "alone")},
                "pass_tokens": int(sum(c.rows * c.tokens for c in mine)),
                "decode_steps": int(sum(c.decode_steps for c in mine)),
                "decode_row_steps": int(sum(b * n for c in mine for b, n in c.segments)),
            }
        )
    return rows


def estimate_seconds(calls: list[Call], cost_model, stage_map: list[int] | None = None) -> dict:
    """Seconds the calls take by a cost table (``asd.core.costs.CostModel``): a pass of R rows × T tokens costs
    the stage's prefill line at R·T tokens (the table's prefill is measured at batch 1), a decode segment
    (B, n) n · step(B). ``stage_map``: cost-table stage of each call stage (default the same index).
    Returns {"total": s, "per_stage": [s, ...] in cost-table order, "pass": s, "decode": s}."""
    stages = cost_model.stages
    per = [0.0] * len(stages)
    t_pass = t_dec = 0.0
    for c in calls:
        st = stages[c.stage if stage_map is None else stage_map[c.stage]]
        p = float(st.prefill(c.rows * c.tokens))
        d = float(sum(n * st.step_s(b) for b, n in c.segments))
        per[stages.index(st)] += p + d
        t_pass += p
        t_dec += d
    return {"total": t_pass + t_dec, "per_stage": per, "pass": t_pass, "decode": t_dec}


def bucket(n: int, buckets: list[int]) -> int:
    """The smallest of ``buckets`` (ascending) ≥ n, or n itself beyond the largest."""
    for b in buckets:
        if b >= n:
            return b
    return n
