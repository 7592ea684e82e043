"""The draft-verify cascade (docs/algorithm.md): draft, features, predict, decide, verify, regenerate.

For a batch of prompts:

1. the first stage (stage 0; stage k for policy "single") generates a response;
2. per sample: features of that stage's run (asd.core.features), the predictor's
   r̂ / â (asd.core.predictor), the normalised transition costs (asd.core.costs, or
   a proxy without a measured cost model), and the policy's decision
   (asd.core.policies.decide: STOP or a later stage m);
3. samples that stop leave the batch; the others are grouped by their target
   stage m, and M_m verifies each sample's current response in one
   teacher-forced pass (greedy: longest agreeing prefix + M_m's token;
   sampling: speculative sampling with the kept distributions of the stage
   that produced the response), then regenerates the rejected suffix from the
   verify pass's KV cache (plain, or drafted by a smaller stage with lookahead
   γ, asd.speculative);
4. repeat from 2 at the new stage until every sample has stopped.

Losslessness: a sample that ends at the final stage holds exactly what the
final model would have produced alone (greedy: the same tokens up to
floating-point reassociation, see docs/cascade.md; sampling: the same
distribution). EOS and ``max_new_tokens`` are applied as the engines'
``generate`` applies them: a response stops after its first EOS token or at
``max_new_tokens`` tokens.

``run`` returns the trace records of docs/traces.md as a dict of numpy arrays (the
writer is asd.traces).
"""

from __future__ import annotations

import functools
import operator
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from asd.config_loader import check_fields
from asd.core.decision import (
    SEED_ACCEPT,
    SEED_DRAFTER,
    SEED_GENERATE,
    SEED_REGENERATE,
    Decider,
    derive_seed,
)
from asd.core.dp import Plan, PolicyConfig
from asd.core.features import FEATURE_NAMES, NUM_FEATURES, TokenTable, record_batch_features
from asd.core.routing import first_stage, resolve_stage, split_calls, walk_window
from asd.core.verify import SpeculativeSampler, Verdict, accept_drafts
from asd.models.base import GenerationParams, check_prompts

NOT_RUN = -2  # decision[n, k] of a stage that did not run


@dataclass
class CascadeConfig:
    """How the cascade generates — YAML section ``cascade``."""

    max_new_tokens: int = 64
    temperature: float = 0.0  # 0: greedy (lossless token for token); > 0: speculative sampling
    top_k: int = 0
    top_p: float = 1.0
    gamma: int = 0  # lookahead of the drafter that speeds up regeneration; 0: plain decoding
    regen_drafter: int = 0  # stage that drafts regenerated suffixes when gamma > 0
    batch_size: int = 32  # the most samples one stage call takes
    # prompts admitted together (a window; docs/cascade.md "Pooled batches"): every stage call takes up to
    # batch_size of the window's samples waiting for that stage; 0: the window is one batch of batch_size
    pool_size: int = 0
    seed: int = 0  # run seed; each sample's seed is derived from (seed, sample_id, stage)

    def __post_init__(self) -> None:
        check_fields(self)  # the loader's type rules, also for configs built in Python
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.gamma < 0:
            raise ValueError(f"gamma must be >= 0, got {self.gamma}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {self.top_k}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.regen_drafter < 0:
            raise ValueError(f"regen_drafter must be >= 0, got {self.regen_drafter}")
        if self.pool_size != 0 and self.pool_size < self.batch_size:
            raise ValueError(
                f"pool_size must be 0 (one batch) or >= batch_size={self.batch_size}, got {self.pool_size}"
            )

    @property
    def window(self) -> int:
        """Prompts admitted together: ``pool_size``, or one batch when it is 0."""
        return self.pool_size or self.batch_size


class Cascade:
    """A hierarchy of engines (smallest first) run as a draft-verify cascade under one policy."""

    def __init__(
        self,
        engines: Sequence,
        cfg: CascadeConfig,
        policy: PolicyConfig,
        *,
        predictor=None,
        cost_model=None,
        tokenizer=None,
        eos_token_ids: Sequence[int] = (),
        sampler: SpeculativeSampler | None = None,
        stage_sizes: Sequence[float] | None = None,
    ):
        K = len(engines)
        if K < 2:
            raise ValueError(f"a cascade needs at least 2 stages, got {K}")
        vocab = [e.vocab_size for e in engines]
        if len(set(vocab)) != 1:
            raise ValueError(f"stages disagree on the vocabulary size {vocab}: they must share one tokenizer")
        if policy.name in ("single", "fixed_depth"):
            resolve_stage(policy.stage, K)
        if policy.name == "random" and len(policy.histogram or ()) != K:
            raise ValueError(f"policy.histogram has {len(policy.histogram or ())} entries; the hierarchy has K={K}")
        if cfg.gamma > 0 and not 0 <= cfg.regen_drafter < K - 1:
            raise ValueError(f"regen_drafter {cfg.regen_drafter} out of range; valid: 0..{K - 2}")
        if policy.name == "speculative" and cfg.gamma < 1:
            raise ValueError("policy 'speculative' needs cascade.gamma >= 1 (the drafter's lookahead)")
        if cfg.gamma > 0 or policy.name == "speculative" or cfg.temperature > 0:
            weak = [
                getattr(e, "name", str(k)) for k, e in enumerate(engines) if not getattr(e, "supports_append", False)
            ]
            if weak:
                raise ValueError(
                    f"stages {weak} cannot teacher-force appended tokens or return full distributions "
                    "(backend 'vllm'): gamma > 0, policy 'speculative' and temperature > 0 need "
                    "backend 'hf'"
                )
        self.engines, self.cfg, self.policy, self.K = list(engines), cfg, policy, K
        self.tokenizer = tokenizer
        self.sampler = sampler or SpeculativeSampler()
        self.sampling = cfg.temperature > 0
        self.params = GenerationParams(
            max_new_tokens=cfg.max_new_tokens,
            temperature=cfg.temperature,
            top_k=cfg.top_k,
            top_p=cfg.top_p,
            eos_token_ids=tuple(int(e) for e in eos_token_ids),
            keep_probs=self.sampling,
            hidden=True,
            prompt_nll=True,
        )
        # [K] relative cost per stage for the proxy costs: the parameter counts unless given (e.g. uniform)
        if stage_sizes is None:
            self.sizes = np.array([float(getattr(e, "num_parameters", lambda: 1.0)()) for e in engines])
        else:
            self.sizes = np.asarray(stage_sizes, dtype=np.float64)
            if self.sizes.shape != (K,) or not np.all(self.sizes > 0):
                raise ValueError(f"stage_sizes must be K={K} positive numbers, got {list(stage_sizes)}")
        self.decider = Decider(policy, K, self.sizes, predictor, cost_model)
        self.predictor, self.cost_model = self.decider.predictor, cost_model
        self.feature_names = list(FEATURE_NAMES)
        V = engines[0].vocab_size
        self.table = TokenTable.from_tokenizer(tokenizer, V) if tokenizer is not None else TokenTable.empty(V)

    # -- public -----------------------------------------------------------------------------------------------
    def validate(self, prompts: Sequence[Sequence[int]]) -> None:
        """ValueError before any model runs: an empty prompt, one too long for a stage, an id outside the vocabulary."""
        ctx = min(e.max_context for e in self.engines)
        check_prompts(prompts, ctx, self.engines[0].vocab_size, self.cfg.max_new_tokens)

    def run(
        self,
        prompts: Sequence[Sequence[int]],
        sample_ids: Sequence[int] | np.ndarray | None = None,
        outcome: np.ndarray | None = None,
        progress: bool = False,
    ) -> dict:
        """Trace records for every prompt (dict of numpy arrays, N rows; see asd.traces).

        outcome: [N, K] bool, stage k's output == the final's (policy "oracle" only). Prompts are admitted in
        windows of ``cfg.window`` (``pool_size``, or one batch of ``batch_size``), in order; every stage call
        takes up to ``batch_size`` of a window's samples (docs/cascade.md "Pooled batches"). ``batch_id`` [N]
        is the first sample id of a sample's window and ``batch_latency_s`` [N] that window's wall-clock
        seconds from the first draft to the last stop.
        """
        self.validate(prompts)
        N = len(prompts)
        ids = np.arange(N, dtype=np.int64) if sample_ids is None else np.asarray(sample_ids, dtype=np.int64)
        if ids.shape != (N,):
            raise ValueError(f"sample_ids has {ids.size} entries for {N} prompts")
        if self.policy.name == "oracle" and (outcome is None or np.shape(outcome) != (N, self.K)):
            raise ValueError(f"policy 'oracle' needs outcome of shape [N, K]=({N}, {self.K})")
        from tqdm import tqdm

        w = self.cfg.window
        parts = []
        for s in tqdm(range(0, N, w), desc="cascade", unit="window", disable=not progress):
            oc = None if outcome is None else np.asarray(outcome)[s : s + w]
            t0 = time.perf_counter()
            part = self._run_window([list(map(int, p)) for p in prompts[s : s + w]], ids[s : s + w], oc)
            B = len(part["sample_id"])
            part["batch_latency_s"] = np.full(B, time.perf_counter() - t0)  # the whole window, draft to finish
            part["batch_id"] = np.full(B, ids[s], np.int64)  # the window's first sample id (unique in a run)
            parts.append(part)
        out: dict[str, Any] = {
            k: (
                np.concatenate([p[k] for p in parts])
                if not isinstance(parts[0][k], list)
                else functools.reduce(operator.iadd, (p[k] for p in parts), [])
            )
            for k in parts[0]
        }
        out["tokens"] = np.array(out["tokens"] + [None], dtype=object)[:-1]
        out["text"] = np.array(out["text"] + [None], dtype=object)[:-1]
        return out

    # -- one window -------------------------------------------------------------------------------------------
    def _run_window(self, prompts: list[list[int]], ids: np.ndarray, outcome: np.ndarray | None) -> dict:
        """Draft, then decide → verify → regenerate until every sample stopped; the window's trace record.

        The samples waiting for the lowest target stage go first, all together (in calls of ``batch_size``);
        they are decided again at that stage, and those sent higher join the samples already waiting there,
        so every stage runs once per window on everything that reached it (routes only go up).
        """
        st = BatchState.start(prompts, ids, self.K, first_stage(self.policy, self.K))
        for idx in split_calls(np.arange(st.size), self.cfg.batch_size):
            if self.policy.name == "speculative":
                self._two_model(st, idx)
            else:
                self._draft(st, idx)
        walk_window(
            st.stage,
            st.record["decision"],
            self.policy.name,
            lambda rows: self._decide(st, rows, outcome),
            lambda idx, m: self._verify(st, idx, m),
            self.cfg.batch_size,
        )
        return self._finish(st)

    def _draft(self, st: BatchState, idx: np.ndarray) -> None:
        """The first stage generates the responses of samples ``idx`` [R] (one call); their features go into the
        record."""
        k0 = int(st.stage[idx[0]])
        res = self.engines[k0].generate(
            [st.prompts[i] for i in idx],
            self.params,
            seeds=[derive_seed(self.cfg.seed, st.sample_ids[i], k0, SEED_GENERATE) for i in idx],
        )
        for r, i in enumerate(idx.tolist()):
            st.set_response(i, res.tokens[r], res.stats[r], res.probs[r] if self.sampling else None)
        rec = st.record
        rec["ran"][idx, k0] = True
        rec["draft_len"][idx, k0] = [len(t) for t in res.tokens]
        rec["latency_s"][idx, k0] = res.seconds
        self._features(st, idx, k0, res.prompt_nll, res.hidden, None)

    def _finish(self, st: BatchState) -> dict:
        """The completed record: final stage, tokens, text (scores are filled in by the caller's metric)."""
        P, rec = self.params, st.record
        rec["final_stage"] = np.array([max(np.flatnonzero(r)) for r in rec["ran"]], np.int8)
        rec["tokens"] = [r.astype(np.int32) for r in st.responses]
        rec["text"] = [
            self.tokenizer.decode(r.tolist(), skip_special_tokens=True) if self.tokenizer else "" for r in st.responses
        ]
        rec["score"] = np.full(st.size, np.nan, np.float32)
        eos = set(P.eos_token_ids)
        assert all(len(r) <= P.max_new_tokens for r in st.responses)
        assert all(not (set(r[:-1].tolist()) & eos) for r in st.responses)
        return rec

    def _features(
        self,
        st: BatchState,
        idx: np.ndarray,
        k: int,
        prompt_nll: np.ndarray,
        hidden,
        accept_prev: np.ndarray | None,
    ) -> None:
        """Record the stage-k features of samples ``idx`` (one compiled call; EOS read from the last tokens).

        prompt_nll [R] nats/token, hidden [R, H] pooled last-layer states, accept_prev [R] fraction (NaN: none;
        None: none for any sample).
        """
        record_batch_features(
            st.record["features"],
            idx,
            k,
            st.record["prompt_len"],
            prompt_nll,
            st.token_stats,
            st.responses,
            accept_prev,
            hidden,
            self.table,
            self.params.eos_token_ids,
        )

    def _decide(self, st: BatchState, live: np.ndarray, outcome: np.ndarray | None) -> Plan:
        """The policy's plan for the samples ``live`` [L] at their current stages (asd.core.decision)."""
        rec = st.record
        return self.decider.decide(
            rec["features"],
            rec["prompt_len"],
            st.responses,
            live,
            st.stage[live],
            st.sample_ids,
            rec["predictions"],
            outcome,
        )

    # -- verification: score, accept, regenerate, record ------------------------------------------------------
    def _verify(self, st: BatchState, idx: np.ndarray, m: int) -> None:
        """M_m verifies the current responses of samples ``idx`` [R] and regenerates what it rejects."""
        t0 = time.perf_counter()
        prompts = [st.prompts[i] for i in idx]
        drafts = [st.responses[i] for i in idx]
        scored = self.engines[m].score(
            prompts,
            drafts,
            self.params,
            with_probs=self.sampling,
            keep_session=True,
            seeds=[derive_seed(self.cfg.seed, st.sample_ids[i], m, SEED_GENERATE) for i in idx],
        )
        if self.sampling:
            rngs = [np.random.default_rng(derive_seed(self.cfg.seed, st.sample_ids[i], m, SEED_ACCEPT)) for i in idx]
            verdict = accept_drafts(
                drafts,
                target_probs=scored.probs,
                draft_probs=[st.draft_probs[i] for i in idx],
                rngs=rngs,
                sampler=self.sampler,
            )
        else:
            verdict = accept_drafts(drafts, target_argmax=scored.argmax)
        new = self._regenerate(st, idx, m, prompts, drafts, scored, verdict)
        secs = time.perf_counter() - t0
        for r, i in enumerate(idx):
            st.set_response(i, *new[r])
        rec = st.record
        rec["ran"][idx, m] = True
        rec["draft_len"][idx, m] = [len(t) for t, _, _ in new]
        rec["accepted_len"][idx, m] = verdict.accepted
        rec["latency_s"][idx, m] = secs
        self._features(st, idx, m, scored.prompt_nll, scored.hidden, verdict.fraction)

    def _regenerate(
        self,
        st: BatchState,
        idx: np.ndarray,
        m: int,
        prompts: list[list[int]],
        drafts: list[np.ndarray],
        scored,
        verdict: Verdict,
    ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
        """Each row's new response after M_m's verdict: (tokens [n] int64, stats [n, 5] float32, probs or None).

        A fully accepted draft stands; a rejected one keeps its accepted prefix plus M_m's token, and M_m
        continues from the verification pass's KV cache (plain decoding, or drafted by a smaller stage with
        lookahead γ) unless that token ends the response (EOS or ``max_new_tokens``).
        """
        P, sampling = self.params, self.sampling
        a, nxt, n = verdict.accepted, verdict.next_token, verdict.draft_len
        R = len(idx)
        cont = (a < n) & ~np.isin(nxt, list(P.eos_token_ids)) & (a + 1 < P.max_new_tokens)
        # statistics and distribution of M_m's token at the first mismatch (the first regenerated token)
        pend_stats = np.stack([scored.stats[r][a[r]] if a[r] < n[r] else np.zeros(5, np.float32) for r in range(R)])
        pend_probs = np.stack([scored.probs[r][a[r]] for r in range(R)]) if sampling else None
        new: list[tuple[np.ndarray, np.ndarray, np.ndarray | None] | None] = [None] * R
        sess = scored.session
        gamma, drafter = self.cfg.gamma, self.cfg.regen_drafter
        if cont.any():
            sess.truncate(np.where(cont, [len(p) for p in prompts] + a, sess.length))
        if cont.any() and gamma > 0 and drafter < m:
            from asd.speculative import speculative_decode

            rows = np.flatnonzero(cont)
            sess.select_rows(rows)
            out = speculative_decode(
                sess,
                self.engines[drafter],
                [prompts[r] for r in rows],
                [drafts[r][: a[r]].tolist() for r in rows],
                nxt[rows],
                pend_stats[rows],
                pend_probs[rows] if pend_probs is not None else None,
                [scored.probs[r][: a[r]] for r in rows] if sampling else None,
                [scored.stats[r][: a[r]] for r in rows],
                P,
                gamma,
                [
                    np.random.default_rng(derive_seed(self.cfg.seed, st.sample_ids[idx[r]], m, SEED_REGENERATE))
                    for r in rows
                ],
                self.sampler,
                drafter_seeds=[derive_seed(self.cfg.seed, st.sample_ids[idx[r]], drafter, SEED_DRAFTER) for r in rows],
            )
            for j, r in enumerate(rows.tolist()):
                new[r] = (out.tokens[j], out.stats[j], out.probs[j] if out.probs is not None else None)
        elif cont.any():
            res = sess.decode(
                nxt, pend_stats, np.where(cont, P.max_new_tokens - a, 0), P, first_probs=pend_probs, release=True
            )
            for r in np.flatnonzero(cont).tolist():
                new[r] = (
                    np.concatenate([drafts[r][: a[r]], res.tokens[r]]),
                    np.concatenate([scored.stats[r][: a[r]], res.stats[r]]),
                    np.concatenate([scored.probs[r][: a[r]], res.probs[r]]) if res.probs is not None else None,
                )
        if sess is not None:
            sess.close()
        for r in range(R):
            if new[r] is not None:
                continue
            if a[r] >= n[r]:  # all accepted: the response stands
                new[r] = (drafts[r], scored.stats[r], scored.probs[r][: n[r]] if sampling else None)
            else:  # M_m's token ends it (EOS or length)
                new[r] = (
                    np.concatenate([drafts[r][: a[r]], [nxt[r]]]).astype(np.int64),
                    np.concatenate([scored.stats[r][: a[r]], pend_stats[r : r + 1]]),
                    scored.probs[r][: a[r] + 1] if sampling else None,
                )
        return new  # type: ignore[return-value]

    def _two_model(self, st: BatchState, idx: np.ndarray) -> None:
        """Policy "speculative": the final stage generates, drafted token by token by stage 0 (lookahead γ)."""
        from asd.speculative import speculative_decode

        t0 = time.perf_counter()
        P, K, rec, seed = self.params, self.K, st.record, self.cfg.seed
        tgt = self.engines[K - 1]
        prompts = [st.prompts[i] for i in idx]
        sess = tgt.new_session(len(idx), seeds=[derive_seed(seed, st.sample_ids[i], K - 1, SEED_GENERATE) for i in idx])
        first, stats, probs = sess.start(prompts, P)
        out = speculative_decode(
            sess,
            self.engines[0],
            prompts,
            [[] for _ in idx],
            first,
            stats,
            probs,
            [np.zeros((0, tgt.vocab_size), np.float32) for _ in idx] if self.sampling else None,
            [np.zeros((0, 5), np.float32) for _ in idx],
            P,
            self.cfg.gamma,
            [np.random.default_rng(derive_seed(seed, st.sample_ids[i], K - 1, SEED_REGENERATE)) for i in idx],
            self.sampler,
            drafter_seeds=[derive_seed(seed, st.sample_ids[i], 0, SEED_DRAFTER) for i in idx],
        )
        hidden = sess.pooled_hidden()
        nll = sess.prompt_nll
        sess.close()
        secs = time.perf_counter() - t0
        for r, i in enumerate(idx):
            st.set_response(i, out.tokens[r], out.stats[r], out.probs[r] if out.probs is not None else None)
        rec["ran"][idx, 0] = True
        rec["ran"][idx, K - 1] = True
        rec["draft_len"][idx, 0] = out.drafted
        rec["decision"][idx, 0] = K - 1
        rec["draft_len"][idx, K - 1] = [len(t) for t in out.tokens]
        rec["accepted_len"][idx, K - 1] = out.accepted
        rec["latency_s"][idx, K - 1] = secs
        st.stage[idx] = K - 1
        self._features(st, idx, K - 1, nll, hidden, None)


@dataclass
class BatchState:
    """The working state of one window of samples, passed between the steps of ``Cascade._run_window``.

    prompts: B prompts (token ids); sample_ids [B] int64; stage [B] int64: the stage whose response each
    sample holds now; responses: B current responses (int64 token ids, n_i each); token_stats: B [n_i, 5]
    float32 per-token statistics of those responses (asd.tokstats columns); draft_probs: B [n_i, V] float32
    distributions that produced them (sampling only, else None); record: the batch's trace record
    (asd.traces fields: ran [B, K] bool, draft_len and accepted_len [B, K] int32 tokens, latency_s [B, K]
    seconds, decision [B, K] int8, predictions [B, K, K] float32, features [B, K, F] float32).
    """

    prompts: list[list[int]]
    sample_ids: np.ndarray
    stage: np.ndarray
    responses: list[np.ndarray]
    token_stats: list[np.ndarray]
    draft_probs: list[np.ndarray | None]
    record: dict[str, Any]

    @classmethod
    def start(cls, prompts: list[list[int]], ids: np.ndarray, K: int, first: int) -> BatchState:
        B = len(prompts)
        record = {
            "sample_id": ids.copy(),
            "prompt_len": np.array([len(p) for p in prompts], np.int32),
            "ran": np.zeros((B, K), bool),
            "draft_len": np.zeros((B, K), np.int32),
            "accepted_len": np.zeros((B, K), np.int32),
            "latency_s": np.zeros((B, K), np.float64),
            "decision": np.full((B, K), NOT_RUN, np.int8),
            "predictions": np.full((B, K, K), np.nan, np.float32),
            "features": np.full((B, K, NUM_FEATURES), np.nan, np.float32),
        }
        return cls(
            prompts=prompts,
            sample_ids=ids,
            stage=np.full(B, first, np.int64),
            responses=[np.zeros(0, np.int64)] * B,
            token_stats=[np.zeros((0, 5), np.float32)] * B,
            draft_probs=[None] * B,
            record=record,
        )

    @property
    def size(self) -> int:
        return len(self.prompts)

    def set_response(self, i: int, tokens: np.ndarray, stats: np.ndarray, probs: np.ndarray | None) -> None:
        """Sample i's current response: tokens [n] int64, stats [n, 5] float32, probs [n, V] float32 or None."""
        self.responses[i], self.token_stats[i], self.draft_probs[i] = tokens, stats, probs
