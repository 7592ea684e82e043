"""The draft-verify cascade (DESIGN §1): draft, features, predict, decide, verify, regenerate.

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

``run`` returns the trace records of DESIGN §5 as a dict of numpy arrays (the
writer is asd.traces).
"""

from __future__ import annotations

import functools
import math
import operator
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from asd.config_loader import check_fields
from asd.core.decision import Decider, derive_seed
from asd.core.dp import STOP, PolicyConfig
from asd.core.features import FEATURE_NAMES, NUM_FEATURES, TokenTable, record_batch_features
from asd.core.routing import REPLAN, first_stage, resolve_stage
from asd.core.verify import SpeculativeSampler, greedy_accept
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
    batch_size: int = 32
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
    ):
        K = len(engines)
        if K < 2:
            raise ValueError(f"a cascade needs at least 2 stages, got {K}")
        vocab = [e.vocab_size for e in engines]
        if len(set(vocab)) != 1:
            raise ValueError(f"stages disagree on the vocabulary size {vocab}: they must share one tokenizer")
        if policy.name in ("single", "fixed_depth"):
            resolve_stage(policy.stage, K)
        if policy.name == "random" and len(policy.histogram) != K:
            raise ValueError(f"policy.histogram has {len(policy.histogram)} entries; the hierarchy has K={K}")
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
        self.sizes = np.array([float(getattr(e, "num_parameters", lambda: 1.0)()) for e in engines])
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
        sample_ids: Sequence[int] | None = None,
        outcome: np.ndarray | None = None,
        progress: bool = False,
    ) -> dict:
        """Trace records for every prompt (dict of numpy arrays, N rows; see asd.traces).

        outcome: [N, K] bool, stage k's output == the final's (policy "oracle" only).
        """
        self.validate(prompts)
        N = len(prompts)
        ids = np.arange(N, dtype=np.int64) if sample_ids is None else np.asarray(sample_ids, dtype=np.int64)
        if ids.shape != (N,):
            raise ValueError(f"sample_ids has {ids.size} entries for {N} prompts")
        if self.policy.name == "oracle" and (outcome is None or np.shape(outcome) != (N, self.K)):
            raise ValueError(f"policy 'oracle' needs outcome of shape [N, K]=({N}, {self.K})")
        from tqdm import tqdm

        bs = self.cfg.batch_size
        parts = []
        for s in tqdm(range(0, N, bs), desc="cascade", unit="batch", disable=not progress):
            oc = None if outcome is None else np.asarray(outcome)[s : s + bs]
            parts.append(self._run_batch([list(map(int, p)) for p in prompts[s : s + bs]], ids[s : s + bs], oc))
        out = {
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

    # -- one batch --------------------------------------------------------------------------------------------
    def _run_batch(self, prompts: list[list[int]], ids: np.ndarray, outcome) -> dict:
        K, B, P = self.K, len(prompts), self.params
        eos = set(P.eos_token_ids)
        rec = {
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
        self._rec, self._prompts, self._ids = rec, prompts, ids
        self.resp: list[np.ndarray] = [np.zeros(0, np.int64)] * B
        self.probs: list[np.ndarray | None] = [None] * B
        self.stats: list[np.ndarray] = [np.zeros((0, 5), np.float32)] * B
        cur = np.full(B, first_stage(self.policy, K), np.int64)
        if self.policy.name == "speculative":
            self._two_model(np.arange(B))
            cur[:] = K - 1
        else:
            k0 = int(cur[0])
            res = self.engines[k0].generate(prompts, P, seeds=[derive_seed(self.cfg.seed, i, k0, 0) for i in ids])
            for i in range(B):
                self.resp[i], self.stats[i] = res.tokens[i], res.stats[i]
                self.probs[i] = res.probs[i] if self.sampling else None
            rec["ran"][:, k0] = True
            rec["draft_len"][:, k0] = [len(t) for t in res.tokens]
            rec["latency_s"][:, k0] = res.seconds
            self._features(np.arange(B), k0, res.prompt_nll, res.hidden, np.full(B, math.nan))
        route = None
        live = np.arange(B)
        while live.size:
            if route is None or self.policy.name in REPLAN:
                plan = self._decide(live, cur[live], outcome)
                action = plan.action
                if route is None:
                    route = np.full((B, K), STOP, np.int64)
                route[live] = plan.next
            else:
                action = route[live, cur[live]]
            rec["decision"][live, cur[live]] = action
            go = action != STOP
            live, action = live[go], action[go]
            for m in np.unique(action):
                idx = live[action == m]
                self._verify(idx, cur[idx], int(m))
                cur[idx] = m
        final = np.array([max(np.flatnonzero(r)) for r in rec["ran"]], np.int8)
        rec["final_stage"] = final
        rec["tokens"] = [r.astype(np.int32) for r in self.resp]
        rec["text"] = [
            self.tokenizer.decode(r.tolist(), skip_special_tokens=True) if self.tokenizer else "" for r in self.resp
        ]
        rec["score"] = np.full(B, np.nan, np.float32)
        assert all(len(r) <= P.max_new_tokens for r in self.resp)
        assert all(not (set(r[:-1].tolist()) & eos) for r in self.resp)
        return rec

    def _features(self, idx: np.ndarray, k: int, prompt_nll: np.ndarray, hidden, accept_prev: np.ndarray) -> None:
        """Record the stage-k features of samples ``idx`` (one compiled call; EOS read from the last tokens)."""
        record_batch_features(
            self._rec["features"],
            idx,
            k,
            self._rec["prompt_len"],
            prompt_nll,
            self.stats,
            self.resp,
            accept_prev,
            hidden,
            self.table,
            self.params.eos_token_ids,
        )

    def _decide(self, live: np.ndarray, cur: np.ndarray, outcome):
        rec = self._rec
        return self.decider.decide(
            rec["features"], rec["prompt_len"], self.resp, live, cur, self._ids, rec["predictions"], outcome
        )

    # -- verification and regeneration ------------------------------------------------------------------------
    def _verify(self, idx: np.ndarray, src: np.ndarray, m: int) -> None:
        """M_m verifies the responses of samples ``idx`` (made by stages ``src``) and regenerates the rest."""
        t0 = time.perf_counter()
        P, rec, eng = self.params, self._rec, self.engines[m]
        prompts = [self._prompts[i] for i in idx]
        drafts = [self.resp[i] for i in idx]
        sc = eng.score(
            prompts,
            drafts,
            P,
            with_probs=self.sampling,
            keep_session=True,
            seeds=[derive_seed(self.cfg.seed, self._ids[i], m, 0) for i in idx],
        )
        R = len(idx)
        a = np.zeros(R, np.int64)
        nxt = np.zeros(R, np.int64)
        for r, i in enumerate(idx):
            if self.sampling:
                rng = np.random.default_rng(derive_seed(self.cfg.seed, self._ids[i], m, 1))
                a[r], nxt[r] = self.sampler.accept(drafts[r], self.probs[i], sc.probs[r], rng)
            else:
                a[r], nxt[r] = greedy_accept(drafts[r], sc.argmax[r])
        n = np.array([len(d) for d in drafts])
        # a fully accepted draft already ended (EOS or max_new_tokens): nothing to regenerate
        cont = (a < n) & ~np.isin(nxt, list(P.eos_token_ids)) & (a + 1 < P.max_new_tokens)
        sess = sc.session
        pend_stats = np.stack([sc.stats[r][a[r]] if a[r] < n[r] else np.zeros(5, np.float32) for r in range(R)])
        pend_probs = np.stack([sc.probs[r][a[r]] for r in range(R)]) if self.sampling else None
        new_tok = [None] * R
        new_st = [None] * R
        new_pr = [None] * R
        gamma, drafter = self.cfg.gamma, self.cfg.regen_drafter
        if cont.any() and gamma > 0 and drafter < m:
            from asd.speculative import speculative_decode

            rows = np.flatnonzero(cont)
            sess.truncate(np.where(cont, [len(p) for p in prompts] + a, sess.length))
            sess.select_rows(rows)
            so = speculative_decode(
                sess,
                self.engines[drafter],
                [prompts[r] for r in rows],
                [drafts[r][: a[r]] for r in rows],
                nxt[rows],
                pend_stats[rows],
                pend_probs[rows] if self.sampling else None,
                [sc.probs[r][: a[r]] for r in rows] if self.sampling else None,
                [sc.stats[r][: a[r]] for r in rows],
                P,
                gamma,
                [np.random.default_rng(derive_seed(self.cfg.seed, self._ids[idx[r]], m, 2)) for r in rows],
                self.sampler,
                drafter_seeds=[derive_seed(self.cfg.seed, self._ids[idx[r]], drafter, 4) for r in rows],
            )
            for j, r in enumerate(rows):
                new_tok[r], new_st[r] = so.tokens[j], so.stats[j]
                new_pr[r] = so.probs[j] if self.sampling else None
        elif cont.any():
            sess.truncate(np.where(cont, [len(p) for p in prompts] + a, sess.length))
            res = sess.decode(
                nxt, pend_stats, np.where(cont, P.max_new_tokens - a, 0), P, first_probs=pend_probs, release=True
            )
            for r in np.flatnonzero(cont):
                new_tok[r] = np.concatenate([drafts[r][: a[r]], res.tokens[r]])
                new_st[r] = np.concatenate([sc.stats[r][: a[r]], res.stats[r]])
                if self.sampling:
                    new_pr[r] = np.concatenate([sc.probs[r][: a[r]], res.probs[r]])
        if sess is not None:
            sess.close()
        secs = time.perf_counter() - t0
        for r, i in enumerate(idx):
            if not cont[r]:
                if a[r] >= n[r]:  # all accepted: the response stands
                    new_tok[r], new_st[r] = drafts[r], sc.stats[r]
                    new_pr[r] = sc.probs[r][: n[r]] if self.sampling else None
                else:  # the target's token ends it (EOS or length)
                    new_tok[r] = np.concatenate([drafts[r][: a[r]], [nxt[r]]]).astype(np.int64)
                    new_st[r] = np.concatenate([sc.stats[r][: a[r]], pend_stats[r : r + 1]])
                    new_pr[r] = np.concatenate([sc.probs[r][: a[r] + 1]]) if self.sampling else None
            self.resp[i], self.stats[i], self.probs[i] = new_tok[r], new_st[r], new_pr[r]
            rec["ran"][i, m] = True
            rec["draft_len"][i, m] = len(new_tok[r])
            rec["accepted_len"][i, m] = a[r]
            rec["latency_s"][i, m] = secs
        self._features(idx, m, sc.prompt_nll, sc.hidden, a / np.maximum(n, 1))

    def _two_model(self, idx: np.ndarray) -> None:
        """Policy "speculative": the final stage generates, drafted token by token by stage 0 (lookahead γ)."""
        from asd.speculative import speculative_decode

        t0 = time.perf_counter()
        P, K, rec = self.params, self.K, self._rec
        tgt = self.engines[K - 1]
        prompts = [self._prompts[i] for i in idx]
        seeds = [derive_seed(self.cfg.seed, self._ids[i], K - 1, 0) for i in idx]
        sess = tgt.new_session(len(idx), seeds=seeds)
        first, st, pr = sess.start(prompts, P)
        so = speculative_decode(
            sess,
            self.engines[0],
            prompts,
            [[] for _ in idx],
            first,
            st,
            pr,
            [np.zeros((0, tgt.vocab_size), np.float32) for _ in idx] if self.sampling else None,
            [np.zeros((0, 5), np.float32) for _ in idx],
            P,
            self.cfg.gamma,
            [np.random.default_rng(derive_seed(self.cfg.seed, self._ids[i], K - 1, 2)) for i in idx],
            self.sampler,
            drafter_seeds=[derive_seed(self.cfg.seed, self._ids[i], 0, 4) for i in idx],
        )
        hidden = sess.pooled_hidden()
        nll = sess.prompt_nll
        sess.close()
        secs = time.perf_counter() - t0
        for r, i in enumerate(idx):
            self.resp[i], self.stats[i] = so.tokens[r], so.stats[r]
            self.probs[i] = so.probs[r] if self.sampling else None
            rec["ran"][i, [0, K - 1]] = True
            rec["draft_len"][i, 0] = so.drafted[r]
            rec["decision"][i, 0] = K - 1
            rec["draft_len"][i, K - 1] = len(so.tokens[r])
            rec["accepted_len"][i, K - 1] = so.accepted[r]
            rec["latency_s"][i, K - 1] = secs
        self._features(idx, K - 1, nll, hidden, np.full(len(idx), math.nan))
