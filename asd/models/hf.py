"""``HFEngine``: transformers models behind the :class:`~asd.models.base.Engine` protocol.

The decode loop is our own, over ``model.model(...)`` + ``lm_head`` with a
``DynamicCache``, so that a verification pass leaves a cache the verifier keeps
decoding from (docs/algorithm.md#verification). Batches are left-padded; rows of one batch may
also hold *holes*: positions whose attention-mask entry is 0 (padding of a
ragged appended chunk, or a rejected draft suffix). Position ids count only the
valid tokens of a row, so a row's logits do not depend on the holes.

Seam for a faster path: everything model-specific is in :class:`HFSession` (asd/models/hf_session.py)
(``_forward``: tokens [B, W] + mask [B, W] → last hidden [B, W, H]). A GPU path
with a static cache and CUDA graphs replaces that method and the cache
operations (``_crop``, ``_select``) and keeps the rest.

Determinism: greedy output equals ``model.generate(do_sample=False)`` on the
same batch up to floating-point reassociation (a chunked verify pass and a
one-token decode step sum in different orders). In float64 the difference is
~1e-15 and never flipped an argmax in the tests; in fp32/bf16 a near-tie can
flip. docs/engines.md says what exactly is guaranteed.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import torch

from asd.models.base import GenerationParams, GenerationResult, ScoreResult, check_prompts
from asd.models.hf_session import HFSession, process_logits, token_stats_torch  # noqa: F401 (re-exported)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16, "float64": torch.float64}


def resolve_model_path(model: str) -> str:
    """``testbed:<stage>`` → the embedded weights folder (sha-checked); anything else unchanged."""
    if model.startswith("testbed:"):
        from asd.testbed.weights import resolve_model

        return str(resolve_model(model))
    return model


def pick_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available; use 'cpu' or 'auto'")
    return torch.device(device)


class HFEngine:
    """A causal LM loaded with transformers (``from_pretrained``), on CPU or GPU, fp32/bf16/fp16/fp64."""

    supports_append = True  # sessions teacher-force appended tokens and return full distributions

    def __init__(
        self,
        model: str | Path,
        *,
        dtype: str = "float32",
        device: str = "auto",
        name: str | None = None,
        max_context: int | None = None,
        attn_implementation: str = "sdpa",
        fast: bool = False,
    ):
        from transformers import AutoModelForCausalLM

        if dtype not in DTYPES:
            raise ValueError(f"unknown dtype {dtype!r}; valid: {sorted(DTYPES)}")
        path = resolve_model_path(str(model))
        self.device = pick_device(device)
        self.model = (
            AutoModelForCausalLM.from_pretrained(path, dtype=DTYPES[dtype], attn_implementation=attn_implementation)
            .to(self.device)
            .eval()
        )
        cfg = self.model.config
        self.name = name or Path(str(model)).name
        self.path = path
        self.dtype = dtype
        self.vocab_size = int(cfg.vocab_size)
        ctx = int(getattr(cfg, "max_position_embeddings", 1 << 30))
        self.max_context = min(ctx, max_context) if max_context else ctx
        self.hidden_size = int(cfg.hidden_size)
        import inspect

        # transformers renamed `past_key_values` to `cache` (deprecated in 5.x); use what this version takes
        sig = inspect.signature(self.model.model.forward).parameters
        self.cache_kwarg = "cache" if "cache" in sig else "past_key_values"
        self.fast = fast  # sessions on the static-cache decoder (asd/models/static_session.py)
        self._decoder = None
        self._decoder_owner = None
        self.pad_id = int(cfg.pad_token_id) if getattr(cfg, "pad_token_id", None) is not None else 0

    @classmethod
    def from_stage(cls, stage, device: str = "auto", dtype: str | None = None) -> HFEngine:
        """Build from an :class:`asd.models.config.StageConfig` (``dtype`` overrides the stage's)."""
        return cls(
            stage.model, dtype=dtype or stage.dtype, device=device, name=stage.name, max_context=stage.max_model_len
        )

    def new_session(self, batch: int, seeds: Sequence[int] | None = None):
        """A fresh session of ``batch`` rows: HFSession, or StaticSession when ``fast``."""
        if self.fast:
            from asd.models.static_session import StaticSession

            return StaticSession(self, batch, seeds=seeds)
        return HFSession(self, batch, seeds=seeds)

    def static_decoder(self, batch: int, owner):
        """The engine's StaticDecoder (grown to ``batch`` rows), or a private one if another session holds it.

        A session holds the shared decoder until its ``close`` (``generate`` and ``score`` without
        ``keep_session`` close theirs); the decoder's tensors are ordinary ones, built outside inference
        mode whatever the caller's mode, so sessions opened inside and outside ``torch.inference_mode``
        share it alike."""
        from asd.models.cuda_graph import StaticDecoder

        if self._decoder_owner is not None and self._decoder_owner is not owner:
            return StaticDecoder(self.model, max_batch=batch, max_len=self.max_context)
        if self._decoder is None or self._decoder.max_batch < batch:
            self._decoder = StaticDecoder(self.model, max_batch=max(batch, 16), max_len=self.max_context)
        self._decoder_owner = owner
        return self._decoder

    def release_decoder(self, owner) -> None:
        if self._decoder_owner is owner:
            self._decoder_owner = None

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    # -- protocol ---------------------------------------------------------------------------------------------
    @torch.inference_mode()
    def generate(
        self, prompts: Sequence[Sequence[int]], params: GenerationParams, seeds: Sequence[int] | None = None
    ) -> GenerationResult:
        """Generate a response for every prompt (left-padded batch; per-row seeds for sampling)."""
        t0 = time.perf_counter()
        check_prompts(prompts, self.max_context, self.vocab_size, params.max_new_tokens)
        sess = self.new_session(len(prompts), seeds=seeds)
        first, stats, probs = sess.start(prompts, params)
        res = sess.decode(first, stats, [params.max_new_tokens] * len(prompts), params, first_probs=probs, release=True)
        res.prompt_nll = sess.prompt_nll
        sess.close()  # fast path: hand the engine's static decoder back for the next session
        res.seconds = time.perf_counter() - t0
        return res

    @torch.inference_mode()
    def score(
        self,
        prompts: Sequence[Sequence[int]],
        continuations: Sequence[Sequence[int]],
        params: GenerationParams | None = None,
        *,
        with_probs: bool = False,
        keep_session: bool = False,
        seeds: Sequence[int] | None = None,
    ) -> ScoreResult:
        """Teacher-force prompt + continuation in one pass; per-token logprob/argmax/stats of the continuation.

        With ``keep_session`` the returned ``session`` holds the cache over prompt + continuation.
        """
        t0 = time.perf_counter()
        params = params or GenerationParams()
        if len(prompts) != len(continuations):
            raise ValueError(f"{len(prompts)} prompts but {len(continuations)} continuations")
        check_prompts(prompts, self.max_context, self.vocab_size)
        full = [list(p) + list(c) for p, c in zip(prompts, continuations)]
        check_prompts(full, self.max_context, self.vocab_size, what="prompt+continuation")
        sess = self.new_session(len(prompts), seeds=seeds)
        n_cont = [len(c) for c in continuations]
        h = sess.append_raw(full, params, nll=params.prompt_nll, nll_len=[len(p) for p in prompts])
        res = sess.read_positions(h, full, n_cont, params, with_probs)
        res.prompt_nll = sess.prompt_nll
        res.session = sess if keep_session else None
        if not keep_session:
            sess.close()
        res.seconds = time.perf_counter() - t0
        return res
