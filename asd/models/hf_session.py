"""``HFSession``: one live batch of rows on an :class:`~asd.models.hf.HFEngine` (KV cache, mask, lengths).

See asd/models/hf.py for the layout (left padding, holes, position ids) and docs/engines.md for the
protocol. ``_forward``, ``_crop`` and ``select_rows`` are the model-specific seam.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from asd.core.verify import sample_index
from asd.models.base import GenerationParams, GenerationResult, ScoreResult

if TYPE_CHECKING:
    from asd.models.hf import HFEngine


def token_stats_torch(logits: torch.Tensor, chosen: torch.Tensor) -> np.ndarray:
    """[N, V] logits, [N] chosen → [N, 5] float32 via asd.tokstats (its C++ or torch path)."""
    from asd.tokstats import token_stats

    out = token_stats(logits.float(), chosen)
    return np.asarray(out.cpu().numpy() if isinstance(out, torch.Tensor) else out, dtype=np.float32)


def process_logits(logits: torch.Tensor, params: GenerationParams) -> torch.Tensor:
    """[R, V] raw logits → [R, V] float32 processed distribution (temperature, top-k, top-p)."""
    x = logits.float() / max(params.temperature, 1e-8)
    if params.top_k and params.top_k < x.shape[-1]:
        kth = torch.topk(x, params.top_k, dim=-1).values[:, -1:]
        x = x.masked_fill(x < kth, float("-inf"))
    if params.top_p < 1.0:
        srt, idx = torch.sort(x, dim=-1, descending=True)
        cum = torch.softmax(srt, -1).cumsum(-1)
        drop = cum - torch.softmax(srt, -1) >= params.top_p  # keep the smallest prefix reaching top_p
        srt = srt.masked_fill(drop, float("-inf"))
        x = torch.full_like(x, float("-inf")).scatter(-1, idx, srt)
    return torch.softmax(x, dim=-1)


class HFSession:
    """A live batch of B rows on one HFEngine: KV cache, attention mask with holes, valid lengths."""

    def __init__(self, engine: HFEngine, batch: int, seeds: Sequence[int] | None = None):
        from transformers import DynamicCache

        self.engine = engine
        self.cache: Any = DynamicCache()  # None once closed
        dev = engine.device
        self.mask = torch.zeros(batch, 0, dtype=torch.long, device=dev)  # [B, T] 1 = valid cache column
        self.length = np.zeros(batch, dtype=np.int64)  # [B] valid tokens per row
        self.hid_sum = torch.zeros(batch, engine.hidden_size, dtype=torch.float32, device=dev)
        self.hid_cnt = torch.zeros(batch, dtype=torch.float32, device=dev)
        self.prompt_nll: np.ndarray | None = None
        seeds = list(seeds) if seeds is not None else list(range(batch))
        self.rngs = [np.random.default_rng(s) for s in seeds]

    # -- model-specific core (the seam for a static-cache / CUDA-graph path) -----------------------------------
    def _forward(self, tok: torch.Tensor, new_mask: torch.Tensor) -> torch.Tensor:
        """tok [B, W] int64, new_mask [B, W] int64 (0 = padding/hole) → last hidden [B, W, H] (model dtype)."""
        pos = torch.as_tensor(self.length, device=tok.device)[:, None] + new_mask.cumsum(-1) - 1
        pos = pos.clamp_min(0)
        full = torch.cat([self.mask, new_mask], dim=1)
        kw = {self.engine.cache_kwarg: self.cache}
        out = self.engine.model.model(input_ids=tok, attention_mask=full, position_ids=pos, use_cache=True, **kw)
        self.mask = full
        self.length = self.length + new_mask.sum(1).cpu().numpy()
        return out.last_hidden_state

    def _crop(self, t: int) -> None:
        """Keep the first t cache columns."""
        layers: list[Any] = list(self.cache.layers)
        for layer in layers:
            if getattr(layer, "keys", None) is not None and layer.keys.numel():
                layer.keys = layer.keys[..., :t, :]
                layer.values = layer.values[..., :t, :]
        self.mask = self.mask[:, :t]

    @torch.inference_mode()
    def select_rows(self, idx: np.ndarray) -> None:
        """Keep rows ``idx`` (batch compaction once most rows have finished)."""
        ti = torch.as_tensor(idx, device=self.mask.device)
        layers: list[Any] = list(self.cache.layers)
        for layer in layers:
            if getattr(layer, "keys", None) is not None and layer.keys.numel():
                layer.keys = layer.keys[ti]
                layer.values = layer.values[ti]
        self.mask, self.length = self.mask[ti], self.length[idx]
        self.hid_sum, self.hid_cnt = self.hid_sum[ti], self.hid_cnt[ti]

    # -- building blocks ---------------------------------------------------------------------------------------
    @torch.inference_mode()
    def append_raw(
        self, rows: list[list[int]], params: GenerationParams, nll: bool = False, nll_len: Sequence[int] | None = None
    ) -> torch.Tensor:
        """Feed ragged token lists (right-aligned in a chunk, left padding as holes) → hidden [B, W, H]."""
        dev = self.engine.device
        W = max(len(r) for r in rows)
        tok = torch.full((len(rows), W), self.engine.pad_id, dtype=torch.long)
        m = torch.zeros((len(rows), W), dtype=torch.long)
        for i, r in enumerate(rows):
            if r:
                tok[i, W - len(r) :] = torch.as_tensor(r, dtype=torch.long)
                m[i, W - len(r) :] = 1
        tok, m = tok.to(dev), m.to(dev)
        h = self._forward(tok, m)
        self._chunk = (W, [len(r) for r in rows])
        if params.hidden:
            mf = m.to(torch.float32)
            self.hid_sum += (h.float() * mf[..., None]).sum(1)
            self.hid_cnt += mf.sum(1)
        if nll:
            self.prompt_nll = self._prompt_nll(h, rows, nll_len if nll_len is not None else [len(r) for r in rows])
        return h

    def _gather(self, h: torch.Tensor, spans: Sequence[tuple[int, int]]) -> torch.Tensor:
        """Rows of h [B, W, H] at columns [s, e) of each row, concatenated → [Σ(e − s), H]."""
        B, W = h.shape[:2]
        idx = [i * W + c for i, (s, e) in enumerate(spans) for c in range(s, e)]
        return h.reshape(B * W, -1)[torch.as_tensor(idx, dtype=torch.long, device=h.device)]

    def _prompt_nll(self, h: torch.Tensor, rows: list[list[int]], lens: Sequence[int]) -> np.ndarray:
        """[B] float64 mean NLL (nats/token) of tokens 1..lens[i]-1 of each row (one batched lm_head)."""
        W = h.shape[1]
        spans = [(W - len(r), W - len(r) + max(n - 1, 0)) for r, n in zip(rows, lens)]
        tgt = [t for r, n in zip(rows, lens) for t in r[1:n]]
        out = np.zeros(len(rows), dtype=np.float64)
        if not tgt:
            return out
        lp = torch.log_softmax(self.engine.model.lm_head(self._gather(h, spans)).float(), -1)
        nl = -lp.gather(-1, torch.as_tensor(tgt, device=lp.device)[:, None])[:, 0].double().cpu().numpy()
        o = 0
        for i, (s, e) in enumerate(spans):
            if e > s:
                out[i] = nl[o : o + e - s].mean()
            o += e - s
        return out

    @torch.inference_mode()
    def start(self, prompts: Sequence[Sequence[int]], params: GenerationParams):
        """Prefill the prompts and choose each row's first token → (tokens [B], stats [B, 5], probs [B, V]|None)."""
        h = self.append_raw([list(p) for p in prompts], params, nll=params.prompt_nll)
        return self.choose(self.engine.model.lm_head(h[:, -1]).float(), params, list(range(len(prompts))))

    @torch.inference_mode()
    def choose(self, logits: torch.Tensor, params: GenerationParams, rows: Sequence[int]):
        """Next token for each of ``rows`` from logits [R, V] → (tokens [R] int64, stats [R, 5], probs [R, V]|None)."""
        if params.greedy:
            tok = logits.argmax(-1)
            probs = process_logits(logits, params) if params.keep_probs else None
            probs_np = probs.cpu().numpy() if probs is not None else None
        else:
            probs = process_logits(logits, params)
            probs_np = probs.cpu().numpy()
            tok = torch.as_tensor(
                [sample_index(probs_np[j], self.rngs[r].random()) for j, r in enumerate(rows)], device=logits.device
            )
        stats = token_stats_torch(logits, tok)
        return tok.cpu().numpy().astype(np.int64), stats, (probs_np if params.keep_probs else None)

    def read_positions(
        self, h: torch.Tensor, full: list[list[int]], n_cont: list[int], params: GenerationParams, with_probs: bool
    ) -> ScoreResult:
        """Per-row logprob/argmax/stats over the last n_cont[i] fed tokens and the position after them."""
        W = h.shape[1]
        spans = [(W - n - 1, W) for n in n_cont]  # n + 1 positions before c[t]
        lg = self.engine.model.lm_head(self._gather(h, spans)).float()  # [Σ(n+1), V]
        am = lg.argmax(-1)
        # chosen = the given token at each position, the argmax at the bonus position
        chosen = torch.cat(
            [torch.as_tensor([*full[i][len(full[i]) - n :], 0], dtype=torch.long) for i, n in enumerate(n_cont)]
        ).to(lg.device)
        ends = np.cumsum([n + 1 for n in n_cont])
        bonus = torch.as_tensor(ends - 1, device=lg.device)
        chosen[bonus] = am[bonus]
        st = token_stats_torch(lg, chosen)
        am_np = am.cpu().numpy().astype(np.int64)
        pr = process_logits(lg, params).cpu().numpy() if with_probs else np.zeros((0, 0), np.float32)
        logprobs, argmax, stats, probs = [], [], [], []
        o = 0
        for n in n_cont:
            logprobs.append(st[o : o + n, 3].copy())
            argmax.append(am_np[o : o + n + 1])
            stats.append(st[o : o + n])
            if with_probs:
                probs.append(pr[o : o + n + 1])
            o += n + 1
        hidden = self.pooled_hidden() if params.hidden else None
        return ScoreResult(
            logprobs=logprobs, argmax=argmax, stats=stats, probs=probs if with_probs else None, hidden=hidden
        )

    def _save_hidden(self, srows: np.ndarray, rows: np.ndarray, out: np.ndarray | None) -> None:
        if out is not None and len(srows):
            out[rows[srows]] = self.pooled_hidden()[srows]

    def pooled_hidden(self) -> np.ndarray:
        """[B, H] float32 mean last-layer hidden state over every valid position fed with ``params.hidden``."""
        return (self.hid_sum / self.hid_cnt.clamp_min(1)[:, None]).cpu().numpy()

    # -- Session protocol -------------------------------------------------------------------------------------
    @torch.inference_mode()
    def truncate(self, keep: Sequence[int]) -> None:
        """Forget every token of row i after its first keep[i] valid tokens (holes in the mask, then crop)."""
        kp = np.asarray(keep, dtype=np.int64)
        assert kp.shape == self.length.shape and (kp <= self.length).all() and (kp >= 0).all()
        if (kp == self.length).all():
            return
        logical = self.mask.cumsum(1)  # [B, T] 1-based index of valid cols
        kt = torch.as_tensor(kp, device=self.mask.device)[:, None]
        self.mask = self.mask * (logical <= kt).long()
        self.length = kp.copy()
        cols = torch.nonzero(self.mask.any(0)).flatten()
        self._crop(int(cols[-1]) + 1 if cols.numel() else 0)

    @torch.inference_mode()
    def append(
        self, tokens: Sequence[Sequence[int]], params: GenerationParams, with_probs: bool = False
    ) -> ScoreResult:
        """Teacher-force ``tokens[i]`` after row i's valid tokens (token-level speculative decoding).

        Returns, per row, the n_i distributions *after* each fed token: ``argmax`` [n_i] int64,
        ``stats`` [n_i, 5] (of each position's argmax), ``probs`` [n_i, V] (with_probs). Rows with
        n_i = 0 are left unchanged (all holes in this chunk).
        """
        rows = [list(t) for t in tokens]
        h = self.append_raw(rows, params)
        W = h.shape[1]
        V = self.engine.vocab_size
        spans = [(W - len(r), W) for r in rows]
        lg = self.engine.model.lm_head(self._gather(h, spans)).float()  # [Σn, V] after each fed token
        am = lg.argmax(-1)
        st = token_stats_torch(lg, am) if lg.shape[0] else np.zeros((0, 5), np.float32)
        am_np = am.cpu().numpy().astype(np.int64)
        pr = process_logits(lg, params).cpu().numpy() if with_probs else np.zeros((0, 0), np.float32)
        argmax, stats, probs = [], [], []
        o = 0
        for r in rows:
            n = len(r)
            argmax.append(am_np[o : o + n])
            stats.append(st[o : o + n])
            probs.append(pr[o : o + n] if with_probs else np.zeros((0, V), np.float32))
            o += n
        return ScoreResult(logprobs=[], argmax=argmax, stats=stats, probs=probs if with_probs else None)

    @torch.inference_mode()
    def extend(
        self, tokens: Sequence[Sequence[int]], budget: Sequence[int], params: GenerationParams
    ) -> GenerationResult:
        """Feed ``tokens[i]`` (≥ 1 token where budget[i] > 0), then generate up to budget[i] tokens per row."""
        rows = [list(t) if b > 0 else [] for t, b in zip(tokens, budget)]
        B = len(rows)
        act = [i for i in range(B) if budget[i] > 0]
        assert all(rows[i] for i in act), "an active row needs at least one token to feed"
        h = self.append_raw(rows, params)
        first = np.zeros(B, np.int64)
        fst = np.zeros((B, 5), np.float32)
        fpr = np.zeros((B, self.engine.vocab_size), np.float32) if params.keep_probs else None
        if act:
            ti = torch.as_tensor(act, device=h.device)
            tok, st, pr = self.choose(self.engine.model.lm_head(h[ti, -1]).float(), params, act)
            first[act], fst[act] = tok, st
            if fpr is not None:
                fpr[act] = pr
        return self.decode(first, fst, budget, params, first_probs=fpr)

    @torch.inference_mode()
    def decode(
        self,
        first: Sequence[int] | np.ndarray,
        first_stats: np.ndarray | None,
        budget: Sequence[int] | np.ndarray,
        params: GenerationParams,
        first_probs: np.ndarray | None = None,
        release: bool = False,
    ) -> GenerationResult:
        """Emit ``first[i]`` then generate until EOS or until row i has emitted ``budget[i]`` tokens.

        first [B] int64 (ignored where budget is 0), first_stats [B, 5] float32, first_probs [B, V] (keep_probs).
        Rows with budget 0 emit nothing. ``release``: rows that finish may leave the cache (faster; the
        session is unusable afterwards).
        """
        t0 = time.perf_counter()
        B = len(first)
        budget_arr = np.asarray(budget, dtype=np.int64)
        eos = np.asarray(params.eos_token_ids, dtype=np.int64)
        out_tok: list[list[int]] = [[] for _ in range(B)]
        out_st: list[list[np.ndarray]] = [[] for _ in range(B)]
        out_pr: list[list[Any]] | None = [[] for _ in range(B)] if params.keep_probs else None
        finished = np.zeros(B, dtype=bool)
        active: np.ndarray = budget_arr > 0
        last = np.zeros(B, dtype=np.int64)

        def emit(i: int, tok: int, st: np.ndarray, pr) -> None:
            """Row i emits ``tok``; it stops at EOS (finished) or when its budget is spent."""
            last[i] = tok
            out_tok[i].append(int(tok))
            out_st[i].append(st)
            if out_pr is not None:
                out_pr[i].append(pr)
            if tok in eos:
                finished[i], active[i] = True, False
            elif len(out_tok[i]) >= budget_arr[i]:
                active[i] = False

        for i in np.flatnonzero(active).tolist():
            emit(
                i,
                int(first[i]),
                first_stats[i] if first_stats is not None else np.full(5, np.nan, np.float32),
                first_probs[i] if out_pr is not None and first_probs is not None else None,
            )
        rows = np.arange(B)  # session row → result row
        hidden_out = np.zeros((B, self.engine.hidden_size), np.float32) if params.hidden else None
        while active[rows].any():
            if release and active[rows].sum() * 2 <= len(rows) and len(rows) > 1:
                keep = np.flatnonzero(active[rows])
                self._save_hidden(np.flatnonzero(~active[rows]), rows, hidden_out)
                self.select_rows(keep)
                rows = rows[keep]
            act = active[rows]
            tok = torch.as_tensor(np.where(act, last[rows], self.engine.pad_id), device=self.engine.device)[:, None]
            m = torch.as_tensor(act.astype(np.int64), device=self.engine.device)[:, None]
            h = self._forward(tok, m)
            if params.hidden:
                mf = m.to(torch.float32)
                self.hid_sum += (h.float() * mf[..., None]).sum(1)
                self.hid_cnt += mf.sum(1)
            sel = np.flatnonzero(act)
            logits = self.engine.model.lm_head(h[torch.as_tensor(sel, device=h.device), -1]).float()
            toks, st, pr = self.choose(logits, params, rows[sel].tolist())
            for j, s in enumerate(sel):
                emit(rows[s], toks[j], st[j], pr[j] if out_pr is not None else None)
        if params.hidden:
            self._save_hidden(np.arange(len(rows)), rows, hidden_out)
        V = self.engine.vocab_size
        return GenerationResult(
            tokens=[np.asarray(t, dtype=np.int64) for t in out_tok],
            stats=[np.asarray(s, dtype=np.float32).reshape(-1, 5) for s in out_st],
            probs=[np.asarray(p, dtype=np.float32).reshape(-1, V) for p in out_pr] if out_pr is not None else None,
            hidden=hidden_out,
            finished=finished,
            seconds=time.perf_counter() - t0,
        )

    def close(self) -> None:
        self.cache = None
        self.mask = self.mask[:, :0]
