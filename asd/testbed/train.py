"""Fixed-step training of the testbed hierarchy (``asd testbed train``).

Every stage sees the *same* seeded stream of training pairs (``tasks.TrainingStream``,
train split only; a shorter budget sees a prefix of a longer one's) for a fixed number of
optimiser steps per size (``training.steps``, or the stage's own ``steps``): a budget in
steps, not in wall time, so that a bigger model is better by capacity, not by speed. Loss is next-token
cross-entropy on the answer tokens (+ the closing ``<|im_end|>``) of chat-formatted
examples; AdamW, linear warm-up then cosine to 10% of the peak, bf16 autocast on CUDA.

On a GPU the stages train concurrently, one process each (``train_all``); on a CPU one
after the other. Each stage writes ``<out>/weights/<stage>/`` (``config.json`` +
bf16 ``model.safetensors``, loadable by ``Qwen2ForCausalLM.from_pretrained``) and
``<out>/logs/<stage>.json`` (loss curve, seconds, steps, params, hardware, config, git revision).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from multiprocessing import Pool
from pathlib import Path
from typing import Any

import numpy as np

from asd.config_loader import to_dict
from asd.testbed import tokenizer as tk
from asd.testbed.config import ModelShape, TrainingConfig

GROUP = 16  # batches sorted by length together (less padding), then shuffled


def _encode_chunk(args: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Chunk ``c`` of ``n`` training pairs → (tokens uint8 [T], lengths int32 [n], prompt lengths int32 [n])."""
    from asd.testbed.tasks import TrainingStream

    chunk_seed, n = args
    stream = TrainingStream(chunk_seed)
    toks, lens, plens = [], [], []
    for _ in range(n):
        prompt, answer = next(stream)
        p = tk.encode(tk.chat_prompt(prompt))
        a = [*tk.encode(answer), tk.EOS_ID]
        toks.extend(p + a)
        lens.append(len(p) + len(a))
        plens.append(len(p))
    return np.asarray(toks, np.uint8), np.asarray(lens, np.int32), np.asarray(plens, np.int32)


def build_data(cfg: TrainingConfig, steps: int, workers: int = 4, chunk: int = 8192, batch_size: int | None = None):
    """The first ``steps * batch_size`` training sequences: (tokens [T] uint8, offsets [N+1] int64, plens [N] int32).

    Chunk ``c`` is seeded by ``(seed, c)`` alone, so a shorter budget sees a prefix of a longer one's data.
    """
    n = steps * (batch_size or cfg.batch_size)
    jobs = [(cfg.seed * 1_000_003 + c, min(chunk, n - c * chunk)) for c in range(math.ceil(n / chunk))]
    if workers > 1:
        with Pool(workers) as pool:
            parts = pool.map(_encode_chunk, jobs)
    else:
        parts = [_encode_chunk(j) for j in jobs]
    toks = np.concatenate([p[0] for p in parts])
    lens = np.concatenate([p[1] for p in parts])
    plens = np.concatenate([p[2] for p in parts])
    assert lens.max() <= cfg.max_len, (lens.max(), cfg.max_len)
    offsets = np.zeros(len(lens) + 1, np.int64)
    np.cumsum(lens, out=offsets[1:])
    return toks, offsets, plens


def batch_order(offsets: np.ndarray, batch_size: int, seed: int) -> list[np.ndarray]:
    """Example indices of every batch: groups of GROUP batches sorted by length, batch order shuffled."""
    n = len(offsets) - 1
    lens = np.diff(offsets)
    rng = np.random.default_rng(seed)
    batches = []
    span = batch_size * GROUP
    for g in range(0, n, span):
        idx = np.arange(g, min(g + span, n))
        idx = idx[np.argsort(lens[idx], kind="stable")]
        grp = [idx[i : i + batch_size] for i in range(0, len(idx), batch_size)]
        rng.shuffle(grp)
        batches.extend(grp)
    return batches


def _batch(toks: np.ndarray, offsets: np.ndarray, plens: np.ndarray, idx: np.ndarray):
    """Right-padded batch: input ids [B, L] int64, labels [B, L] int64 (-100 off the answer), mask [B, L] int64."""
    lens = offsets[idx + 1] - offsets[idx]
    B, L = len(idx), int(lens.max())
    rows = np.repeat(np.arange(B), lens)
    cols = np.arange(lens.sum()) - np.repeat(np.cumsum(lens) - lens, lens)
    src = np.repeat(offsets[idx], lens) + cols
    ids = np.full((B, L), tk.PAD_ID, np.int64)
    ids[rows, cols] = toks[src]
    mask = np.zeros((B, L), np.int64)
    mask[rows, cols] = 1
    labels = np.where(mask.astype(bool) & (np.arange(L)[None, :] >= plens[idx][:, None]), ids, -100)
    return ids, labels, mask


def make_model(shape: ModelShape, seed: int):
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    kwargs: dict[str, Any] = {
        "vocab_size": tk.VOCAB_SIZE,
        "hidden_size": shape.hidden_size,
        "num_hidden_layers": shape.num_hidden_layers,
        "num_attention_heads": shape.num_attention_heads,
        "num_key_value_heads": shape.num_key_value_heads,
        "intermediate_size": shape.intermediate_size,
        "max_position_embeddings": 512,
        "tie_word_embeddings": True,
        "bos_token_id": tk.BOS_TURN_ID,
        "eos_token_id": tk.EOS_ID,
        "pad_token_id": tk.PAD_ID,
        "rope_theta": 10000.0,
    }
    cfg = Qwen2Config(**kwargs)
    torch.manual_seed(seed)
    return Qwen2ForCausalLM(cfg)


def lr_at(step: int, cfg: TrainingConfig, peak: float, steps: int) -> float:
    if step < cfg.warmup:
        return peak * (step + 1) / cfg.warmup
    t = (step - cfg.warmup) / max(1, steps - cfg.warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))


def train_stage(cfg: TrainingConfig, stage: str, out: Path, workers: int = 4) -> dict:
    """Train one stage for its step budget; write its weights and log; return the log record."""
    import torch
    from tqdm import tqdm

    from asd.provenance import provenance

    if stage not in cfg.stages:
        raise ValueError(f"unknown stage {stage!r}; valid: {', '.join(cfg.stages)}")
    shape = cfg.stages[stage]
    dev = cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    if dev.startswith("cuda"):  # several stages share the machine's cores
        torch.set_num_threads(2)
    t0 = time.time()
    steps = shape.steps or cfg.steps
    bs = shape.batch_size or cfg.batch_size
    toks, offsets, plens = build_data(cfg, steps, workers, batch_size=bs)
    data_s = time.time() - t0
    batches = batch_order(offsets, bs, cfg.seed)
    model = make_model(shape, cfg.seed).to(dev)
    n_params = sum(p.numel() for p in model.parameters())
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=shape.lr,
        betas=(0.9, 0.95),
        fused=dev.startswith("cuda"),
    )
    amp = (
        torch.autocast("cuda", dtype=torch.bfloat16) if dev.startswith("cuda") else torch.autocast("cpu", enabled=False)
    )
    curve: list[tuple[int, float]] = []
    model.train()
    t1 = time.time()
    run = 0.0
    stopped_at = None
    for step in tqdm(range(steps), desc=f"train {stage}", mininterval=10, disable=None):
        if cfg.max_train_seconds and time.time() - t1 > cfg.max_train_seconds:
            stopped_at = step
            break
        ids, labels, mask = (
            torch.from_numpy(x).to(dev, non_blocking=True) for x in _batch(toks, offsets, plens, batches[step])
        )
        for g in opt.param_groups:
            g["lr"] = lr_at(step, cfg, shape.lr, steps)
        with amp:
            logits = model(input_ids=ids, attention_mask=mask).logits
        loss = torch.nn.functional.cross_entropy(
            logits[:, :-1].float().reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1), ignore_index=-100
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % cfg.log_every == 0 or step == steps - 1:
            run = loss.item()
            curve.append((step, run))
    if dev.startswith("cuda"):
        torch.cuda.synchronize()
    train_s = time.time() - t1
    wdir = out / "weights" / stage
    model.to(torch.bfloat16).save_pretrained(wdir, safe_serialization=True)
    import transformers

    rec = provenance(
        config=to_dict(cfg),
        stage=stage,
        params=n_params,
        steps=steps,
        stopped_at_step=stopped_at,
        batch_size=bs,
        train_seconds=round(train_s, 1),
        data_seconds=round(data_s, 1),
        device=torch.cuda.get_device_name(0) if dev.startswith("cuda") else "cpu",
        torch=torch.__version__,
        transformers=transformers.__version__,
        final_loss=curve[-1][1],
        loss_curve=curve,
    )
    (out / "logs").mkdir(parents=True, exist_ok=True)
    (out / "logs" / f"{stage}.json").write_text(json.dumps(rec, indent=1) + "\n")
    return rec


def train_all(
    config_path: str, out: Path, stages: list[str] | None = None, concurrent: bool | None = None, n_parallel: int = 1
) -> int:
    """Train every stage; concurrently in one process each on CUDA (default), else sequentially."""
    from asd.run_config import load_section

    cfg = load_section(config_path, "training")
    names = stages or list(cfg.stages)
    for s in names:
        if s not in cfg.stages:
            raise ValueError(f"unknown stage {s!r}; valid: {', '.join(cfg.stages)}")
    if concurrent is None:
        import torch

        concurrent = cfg.device != "cpu" and torch.cuda.is_available()
    if not concurrent:
        workers = max(1, min(12, (os.cpu_count() or 1) // max(1, n_parallel)))
        for s in names:
            rec = train_stage(cfg, s, out, workers=workers)
            print(f"{s}: {rec['params'] / 1e6:.2f}M params, loss {rec['final_loss']:.4f}, {rec['train_seconds']} s")
        return 0
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "asd.testbed.train",
                "--config",
                config_path,
                "--out",
                str(out),
                "--stage",
                s,
                "--sequential",
                "--parallel",
                str(len(names)),
            ]
        )
        for s in names
    ]
    return max(p.wait() for p in procs)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/testbed.yaml")
    ap.add_argument("--out", default=None, help="output folder (default: training.out_dir)")
    ap.add_argument("--stage", action="append", help="train only this stage (repeatable)")
    ap.add_argument("--sequential", action="store_true", help="one stage after the other in this process")
    ap.add_argument("--parallel", type=int, default=1, help=argparse.SUPPRESS)  # processes sharing the CPUs
    a = ap.parse_args(argv)
    from asd.run_config import load_section

    out = Path(a.out or load_section(a.config, "training").out_dir)
    return train_all(a.config, out, a.stage, concurrent=False if a.sequential else None, n_parallel=a.parallel)


if __name__ == "__main__":
    raise SystemExit(main())
