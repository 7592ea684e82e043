"""Tensor-parallel decode of a Qwen2-architecture model (Megatron-style), one process per GPU, for costs.

Each rank holds its shard only: q/k/v and gate/up column-parallel (its heads, its slice of the MLP),
o_proj and down_proj row-parallel followed by an all-reduce (NCCL), lm_head column-parallel followed by
an all-gather of the logits; embeddings and norms replicated. Static KV cache of the rank's KV heads,
the step captured in a CUDA graph per (batch, tokens) where the backend allows (NCCL inside graphs),
else eager. Random weights are built shard by shard on each GPU in bf16 (a 72B never exists whole).

    torchrun --nproc_per_node 4 scripts/gpu_tp.py --size 72b --out $OUT/tp72b.json
    torchrun --nproc_per_node 2 scripts/gpu_tp.py --check --device cpu      # TP == 1-device, tiny fp32

``--check`` builds one tiny model on every rank (same seed), shards it, and compares greedy tokens and
logits with asd.models.cuda_graph.StaticDecoder on the whole model. Keep NVLink multicast off
(NCCL_NVLS_ENABLE=0; scripts/gpu_tp.sh sets it).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import torch
import torch.distributed as dist
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from asd.models.cuda_graph import _rms_norm, _rotate_half  # noqa: E402
from asd.profiler import time_fn  # noqa: E402


class TPDecoder:
    """Rank ``rank`` of ``world``: its weight shard, its KV heads, and the step over them."""

    def __init__(self, shape: dict, rank: int, world: int, max_batch: int, max_len: int, dtype, device,
                 full=None, group=None):
        h, inter = shape["hidden_size"], shape["intermediate_size"]
        nq, nkv, L, V = (shape["num_attention_heads"], shape["num_key_value_heads"], shape["num_hidden_layers"],
                         shape["vocab_size"])
        hd = h // nq
        assert nq % world == 0 and nkv % world == 0 and inter % world == 0 and V % world == 0, (shape, world)
        self.rank, self.world, self.device, self.dtype, self.group = rank, world, device, dtype, group
        self.nq, self.nkv, self.hd, self.inter = nq // world, nkv // world, hd, inter // world
        self.eps, self.V = shape["rms_norm_eps"], V
        self.max_batch, self.max_len = max_batch, -(-max_len // 64) * 64
        q0, k0 = rank * self.nq * hd, rank * self.nkv * hd
        i0, v0 = rank * self.inter, rank * (V // world)

        def rnd(*s):
            return (torch.randn(*s, device=device, dtype=dtype) * 0.02)

        self.layers = []
        for li in range(L):
            if full is not None:   # shard an existing HF model (the check)
                lay = full.model.layers[li]
                a, m = lay.self_attn, lay.mlp
                cols = [a.q_proj, a.k_proj, a.v_proj]
                w_qkv = torch.cat([cols[0].weight[q0:q0 + self.nq * hd], cols[1].weight[k0:k0 + self.nkv * hd],
                                   cols[2].weight[k0:k0 + self.nkv * hd]])
                b_qkv = torch.cat([cols[0].bias[q0:q0 + self.nq * hd], cols[1].bias[k0:k0 + self.nkv * hd],
                                   cols[2].bias[k0:k0 + self.nkv * hd]])
                w_o = a.o_proj.weight[:, q0:q0 + self.nq * hd]
                w_gu = torch.cat([m.gate_proj.weight[i0:i0 + self.inter], m.up_proj.weight[i0:i0 + self.inter]])
                w_d = m.down_proj.weight[:, i0:i0 + self.inter]
                ln1, ln2 = lay.input_layernorm.weight, lay.post_attention_layernorm.weight
                t = [x.detach().to(device, dtype).contiguous() for x in (ln1, w_qkv, b_qkv, w_o, ln2, w_gu, w_d)]
            else:
                nqkv = (self.nq + 2 * self.nkv) * hd
                t = [torch.ones(h, device=device, dtype=dtype), rnd(nqkv, h), rnd(nqkv), rnd(h, self.nq * hd),
                     torch.ones(h, device=device, dtype=dtype), rnd(2 * self.inter, h), rnd(h, self.inter)]
            self.layers.append(t)
        if full is not None:
            self.embed = full.model.embed_tokens.weight.detach().to(device, dtype)
            self.norm = full.model.norm.weight.detach().to(device, dtype)
            self.lm_head = full.lm_head.weight[v0:v0 + V // world].detach().to(device, dtype).contiguous()
            inv_freq = full.model.rotary_emb.inv_freq.to(device, torch.float)
        else:
            self.embed = rnd(V, h)
            self.norm = torch.ones(h, device=device, dtype=dtype)
            self.lm_head = rnd(V // world, h)
            inv_freq = 1.0 / (shape["rope_theta"] ** (torch.arange(0, hd, 2, dtype=torch.float, device=device) / hd))
        freqs = torch.arange(self.max_len, device=device, dtype=torch.float)[:, None] * inv_freq[None]
        emb = torch.cat((freqs, freqs), -1)
        self.cos, self.sin = emb.cos().to(dtype), emb.sin().to(dtype)
        self.kv = torch.zeros(L, max_batch, 2, self.nkv, self.max_len, hd, device=device, dtype=dtype)
        self.lengths = torch.zeros(max_batch, dtype=torch.long, device=device)
        self.slots = torch.arange(self.max_len, device=device)
        self.graphs = {}

    def weight_bytes(self) -> int:
        n = sum(x.numel() for t in self.layers for x in t) + self.embed.numel() + self.norm.numel()
        return (n + self.lm_head.numel()) * self.embed.element_size()

    def forward(self, ids, window: int):
        """ids [B,T] at slots lengths[:B]+t, attending over slots [0, window) → logits [B,T,V] (all ranks);
        writes K/V; no length update."""
        B, T = ids.shape
        hd, nq, nkv, g = self.hd, self.nq, self.nkv, self.nq // self.nkv
        pos = self.lengths[:B, None] + torch.arange(T, device=ids.device)
        cos, sin = self.cos[pos].unsqueeze(2), self.sin[pos].unsqueeze(2)
        allowed = self.slots[None, None, :window] <= pos[:, :, None]
        bias = torch.zeros(allowed.shape, dtype=self.dtype, device=ids.device).masked_fill_(~allowed, float("-inf"))
        mask = bias[:, None, None].expand(B, 1, g, T, window).reshape(B, 1, g * T, window)
        rows = torch.arange(B, device=ids.device)[:, None].expand(B, T)
        x = F.embedding(ids, self.embed)
        for li, (ln1, w_qkv, b_qkv, w_o, ln2, w_gu, w_d) in enumerate(self.layers):
            qkv = F.linear(_rms_norm(x, ln1, self.eps), w_qkv, b_qkv).view(B, T, nq + 2 * nkv, hd)
            qk = qkv[:, :, :nq + nkv]
            qk = qk * cos + _rotate_half(qk) * sin
            q = qk[:, :, :nq].reshape(B, T, nkv, g, hd).permute(0, 2, 3, 1, 4).reshape(B, nkv, g * T, hd)
            cache = self.kv[li, :B]
            cache[rows, :, :, pos] = torch.stack((qk[:, :, nq:], qkv[:, :, nq + nkv:]), dim=2)
            o = F.scaled_dot_product_attention(q, cache[:, 0, :, :window], cache[:, 1, :, :window], attn_mask=mask,
                                               scale=hd ** -0.5)
            o = F.linear(o.view(B, nkv, g, T, hd).permute(0, 3, 1, 2, 4).reshape(B, T, -1), w_o)
            dist.all_reduce(o, group=self.group)
            x = x + o
            gu = F.linear(_rms_norm(x, ln2, self.eps), w_gu)
            d = F.linear(F.silu(gu[..., :self.inter]) * gu[..., self.inter:], w_d)
            dist.all_reduce(d, group=self.group)
            x = x + d
        part = F.linear(_rms_norm(x, self.norm, self.eps), self.lm_head).contiguous()   # [B,T,V/world]
        if part.is_cuda:
            gathered = torch.empty((self.world, *part.shape), dtype=part.dtype, device=part.device)
            dist.all_gather_into_tensor(gathered, part, group=self.group)
        else:   # gloo (the CPU check) has no all_gather_into_tensor
            parts = [torch.empty_like(part) for _ in range(self.world)]
            dist.all_gather(parts, part, group=self.group)
            gathered = torch.stack(parts)
        return gathered.permute(1, 2, 0, 3).reshape(B, T, self.V)

    def step(self, ids, use_graph: bool, window: int | None = None):
        """Feed ids [B,T]; advance lengths by T; returns (logits [B,T,V], argmax of the last [B])."""
        B, T = ids.shape
        window = self.max_len if window is None else min(self.max_len, -(-window // 64) * 64)
        if not use_graph:
            logits = self.forward(ids, window)
            self.lengths[:B] += T
            return logits, logits[:, -1].argmax(-1)
        key = (B, T, window)
        if key not in self.graphs:
            static = torch.zeros(B, T, dtype=torch.long, device=self.device)
            saved = self.lengths.clone()

            def body():
                lg = self.forward(static, window)
                nxt = lg[:, -1].argmax(-1)
                self.lengths[:B] += T
                return lg, nxt

            s = torch.cuda.Stream()
            s.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(s):
                for _ in range(2):
                    body()
                    self.lengths.copy_(saved)
            torch.cuda.current_stream().wait_stream(s)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                lg, nxt = body()
            self.lengths.copy_(saved)
            self.graphs[key] = (static, lg, nxt, graph)
        static, lg, nxt, graph = self.graphs[key]
        static.copy_(ids)
        graph.replay()
        return lg, nxt

    def set_lengths(self, n: int, B: int) -> None:
        self.lengths[:B].fill_(n)


def timed(fn, device, warmup, repeats):
    """asd.profiler.time_fn with every rank released together (a barrier before each timed call)."""
    return time_fn(fn, device, warmup, repeats, sync=dist.barrier)


def check(rank, world, device):
    """TP greedy == StaticDecoder on the whole tiny model (fp32)."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from asd.models.cuda_graph import StaticDecoder

    torch.manual_seed(0)
    cfg = Qwen2Config(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=8, num_key_value_heads=4)
    full = Qwen2ForCausalLM(cfg).eval()
    shape = {k: getattr(cfg, k) for k in ("hidden_size", "intermediate_size", "num_attention_heads",
                                           "num_key_value_heads", "num_hidden_layers", "vocab_size", "rms_norm_eps")}
    tp = TPDecoder(shape, rank, world, 2, 64, torch.float32, device, full=full)
    g = torch.Generator().manual_seed(1)
    prompt = torch.randint(0, 256, (2, 9), generator=g)
    ref = StaticDecoder(full, max_batch=2, max_len=64, use_graphs=False)
    ref_lg = ref.prefill(prompt, [9, 9], all_logits=True)
    want = ref.generate_greedy(prompt.tolist(), 12)
    use_graph = device.type == "cuda"
    with torch.no_grad():
        tp.set_lengths(0, 2)
        lg, nxt = tp.step(prompt.to(device), use_graph)
        err = float((lg.cpu() - ref_lg).abs().max())
        got = [nxt.cpu()]
        for _ in range(11):
            lg, nxt = tp.step(got[-1][:, None].to(device), use_graph)
            got.append(nxt.cpu())
    got = torch.stack(got, 1).tolist()
    return {"equal": got == want, "prefill_logits_max_abs_err": err, "graphs": use_graph}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="72b")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--out", default=None)
    ap.add_argument("--batch", default="1,8")
    ap.add_argument("--context", type=int, default=512)
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--prefill", default="64,128,256,512,1024,2048")
    ap.add_argument("--no-graph", action="store_true")
    args = ap.parse_args(argv)
    cuda = args.device == "cuda"
    dist.init_process_group("nccl" if cuda else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', rank))}" if cuda else "cpu")
    if cuda:
        torch.cuda.set_device(device)
    rec = {"world": world, "device": torch.cuda.get_device_name(device) if cuda else "cpu",
           "torch": torch.__version__, "cuda": torch.version.cuda, "args": vars(args),
           "git_revision": os.environ.get("ASD_GIT_REVISION", "unknown"),
           "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    with torch.no_grad():
        if args.check or not cuda:
            rec["check"] = check(rank, world, device)
            if rank == 0:
                print("check:", rec["check"], flush=True)
        if cuda and args.size:
            from asd.models.shapes import QWEN25

            shape = QWEN25[args.size]
            bs = [int(b) for b in args.batch.split(",")]
            t0 = time.time()
            pre = [int(t) for t in args.prefill.split(",") if t]
            tp = TPDecoder(shape, rank, world, max(bs), max([args.context + args.steps] + pre), torch.bfloat16,
                           device)
            dwin = args.context + args.steps   # decode attends over this window, as the 1-GPU profile does
            torch.cuda.synchronize()
            rec["weight_bytes_per_rank"] = tp.weight_bytes()
            n = (1 << 30) // 4
            a = torch.randn(n, device=device)
            b = torch.empty_like(a)
            rec["copy_bandwidth_Bps"] = 2 * a.numel() * 4 / statistics.median(timed(lambda: b.copy_(a), device, 3, 20))
            del a, b
            x = torch.randn(1, 1, shape["hidden_size"], device=device, dtype=torch.bfloat16)
            rec["allreduce_1x8192_s"] = statistics.median(timed(lambda: dist.all_reduce(x), device, 5, 50))
            if rank == 0:
                print(f"[{args.size} TP{world}] built in {time.time() - t0:.1f}s, "
                      f"{torch.cuda.memory_allocated(device) / 1e9:.1f} GB/rank", flush=True)
            ids = torch.randint(0, shape["vocab_size"], (max(bs), args.context), device=device)
            dist.broadcast(ids, 0)
            use_graph = not args.no_graph
            rec["decode"] = {}
            for B in bs:
                tok = ids[:B, -1:]

                def run():
                    tp.set_lengths(args.context, B)
                    for _ in range(args.steps):
                        tp.step(tok, use_graph, dwin)

                try:
                    secs = timed(run, device, 2, 5)
                except Exception as e:  # noqa: BLE001 — graph capture of NCCL can fail: fall back to eager
                    if rank == 0:
                        print(f"graph step failed ({type(e).__name__}: {e}); eager from here", flush=True)
                    use_graph, tp.graphs = False, {}
                    secs = timed(run, device, 1, 3)
                rec["decode"][str(B)] = statistics.median(secs) / args.steps
                rec["graphs"] = use_graph
            rec["prefill"] = {}
            for n in pre:
                pid = torch.randint(0, shape["vocab_size"], (1, n), device=device)
                dist.broadcast(pid, 0)

                def run_p():
                    tp.set_lengths(0, 1)
                    tp.step(pid, use_graph, n)

                rec["prefill"][str(n)] = statistics.median(timed(run_p, device, 2, 5))
            if rank == 0:
                print(json.dumps({k: v for k, v in rec.items() if k != "check"}), flush=True)
    if rank == 0 and args.out:
        with open(args.out, "w") as f:
            json.dump(rec, f, indent=1)
    # why: on 4 H200s (2026-11-26) the closing barrier hung for minutes after the graphs with NCCL inside them
    # had run; every rank's work is done and rank 0 has written the result, so leave without the teardown
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
