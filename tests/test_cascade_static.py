"""The cascade on the static-cache engine path (``HFEngine(fast=True)``) under every policy and run order.

Lossless (greedy): a sample that ends at stage k carries exactly the tokens stage k's own ``generate``
emits (at λ = ∞ / fixed depth -1 / two-model speculative: the final model's), on the fast path as on the
default path. One matrix (:func:`configurations`) of policies × γ × regeneration drafter, over hierarchies
of 2, 3 and 4 random Qwen2 stages (float64 on CPU, so that chunked verify passes and one-token steps agree
to ~1e-15: docs/cascade.md), is run twice on the *same* engine objects, once in each order: a stage's
shared static decoder is then first built inside inference mode (a verification, ``generate``) or outside
it (a drafter's session), and later sessions open in the other mode.

The 4-stage hierarchy is shaped like the configuration that broke the GPU path: an independent stage 0 of
another head size, a final model with a head size that is no power of two and an odd vocabulary, EOS equal
to the pad id (and emitted), prompts up to the context window, a cascade batch smaller than the prompt batch.
``gpu`` tests run that configuration itself on a CUDA device (docs/engines.md).
"""

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is not installed (requirements/base.txt)")

from hf_reference import ragged_prompts

from asd.cascade import Cascade, CascadeConfig
from asd.core.costs import CostModel, LinearFit, StageCost
from asd.core.dp import PolicyConfig
from asd.core.predictor import PriorPredictor
from asd.models.base import GenerationParams
from asd.models.hf import HFEngine
from asd.models.random_init import random_family, save_perturbed, save_random_qwen2

MAX_NEW = 12
N_PROMPTS = 13
BATCH = 5  # < N_PROMPTS: batches of 5, 5, 3 rows on the same engines


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models: one intra-op thread. On a loaded 2-core machine torch's thread pool made each of these
    matrix products ~100x slower (contention), not faster; restored afterwards."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _eos_family(root, *, ctx: int) -> tuple[list, int]:
    """4 stages: s0 independent (head_dim 16), s1/s2 perturbed copies of s3 (head_dim 20, vocabulary 131);
    EOS = pad = a token the final model emits often, so that rows stop early."""
    shape = dict(vocab_size=131, hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2, head_dim=20,
                 intermediate_size=48, max_position_embeddings=ctx, seed=21, init_std=0.3)
    probe = HFEngine(save_random_qwen2(root / "probe", **shape), dtype="float64", device="cpu")
    out = probe.generate(ragged_prompts(N_PROMPTS, seed=21, vocab=131), GenerationParams(MAX_NEW)).tokens
    counts = np.bincount(np.concatenate(out), minlength=131)
    eos = int(np.argsort(counts)[-2])  # the second most frequent token: some rows stop early, not all at once
    s3 = save_random_qwen2(root / "s3", eos_token_id=eos, pad_token_id=eos, **shape)
    s0 = save_random_qwen2(root / "s0", vocab_size=131, hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1,
                           head_dim=16, intermediate_size=32, max_position_embeddings=ctx, seed=22, init_std=0.3,
                           eos_token_id=eos, pad_token_id=eos)
    s1 = save_perturbed(s3, root / "s1", noise=0.06, seed=1)
    s2 = save_perturbed(s3, root / "s2", noise=0.03, seed=2)
    return [s0, s1, s2, s3], eos


def _prompts(K: int, ctx: int) -> list[list[int]]:
    if K < 4:
        return ragged_prompts(N_PROMPTS, seed=K)
    rng = np.random.default_rng(4)
    lens = [1, ctx - MAX_NEW, ctx - MAX_NEW - 1] + rng.integers(1, ctx - MAX_NEW, N_PROMPTS - 3).tolist()
    return [rng.integers(3, 131, n).tolist() for n in lens]


@pytest.fixture(scope="module", params=[2, 3, 4], ids=lambda k: f"K{k}")
def hierarchy(request, tmp_path_factory):
    """(checkpoint dirs, EOS id, prompts, own[k] = stage k's own greedy output on the fast path)."""
    K = request.param
    root = tmp_path_factory.mktemp(f"static{K}")
    ctx = 96
    if K == 4:
        dirs, eos = _eos_family(root, ctx=ctx)
    else:
        shape = dict(hidden_size=16 * K, num_layers=K - 1, num_heads=2 * (K - 1), num_kv_heads=K - 1,
                     intermediate_size=32, max_position_embeddings=ctx, init_std=0.3)
        dirs, eos = random_family(root, stages=K, seed=10 + K, noise=0.05, **shape), 2
    prompts = _prompts(K, ctx)
    P = GenerationParams(MAX_NEW, eos_token_ids=(eos,))
    own = []
    for d in dirs:
        fast = HFEngine(d, dtype="float64", device="cpu", fast=True).generate(prompts, P).tokens
        default = HFEngine(d, dtype="float64", device="cpu").generate(prompts, P).tokens
        own.append([t.tolist() for t in fast])
        assert own[-1] == [t.tolist() for t in default]  # float64: the fast path = the default path
    if K == 4:
        assert sum(eos in t for t in own[-1]) >= 2  # EOS (= pad) ends some rows of the final model early
    return dirs, eos, prompts, own


def configurations(K: int) -> list[tuple[str, PolicyConfig, int, int, dict]]:
    """(label, policy, gamma, regen_drafter, Cascade kwargs) for a K-stage hierarchy."""
    inf, mid, last = math.inf, max(1, K // 2), K - 1
    drafters = sorted({0, mid if mid < last else 0})  # 0, and a middle stage where there is one
    out = []
    for d in drafters:
        out += [
            (f"dp lam=inf g=2 d={d}", PolicyConfig(name="dp", lam=inf), 2, d, {}),
            (f"fixed_depth g=1 d={d}", PolicyConfig(name="fixed_depth", stage=-1), 1, d, {}),
            (f"fixed_depth g=3 d={d}", PolicyConfig(name="fixed_depth", stage=-1), 3, d, {}),
            (f"random g=2 d={d}", PolicyConfig(name="random", histogram=[1.0] * K, seed=3), 2, d, {}),
        ]
    # threshold: r̂ = 0.7 > τ at stage 1; dp at λ = 1: stage 1 nearly always right at a fraction of the cost
    r_prior = tuple([0.5] * (K - 1) + [1.0]) if K == 2 else tuple([0.3] + [0.7] * (K - 2) + [1.0])
    r_dp = tuple([0.2] * (K - 1) + [1.0]) if K == 2 else tuple([0.2] + [0.95] * (K - 2) + [1.0])
    cm = CostModel(stages=tuple(StageCost(f"s{k}", prefill=LinearFit(1e-4 * f, 0.0), decode=LinearFit(0.0, 1e-2 * f))
                                for k, f in enumerate(np.geomspace(0.05, 1.0, K))))
    out += [
        ("dp lam=inf g=0", PolicyConfig(name="dp", lam=inf), 0, 0, {}),
        ("dp lam=0", PolicyConfig(name="dp", lam=0.0), 0, 0, {}),
        ("dp lam=1 cost model", PolicyConfig(name="dp", lam=1.0), 1, 0,
         dict(predictor=PriorPredictor(r_prior=r_dp), cost_model=cm)),
        ("fixed_depth g=0", PolicyConfig(name="fixed_depth", stage=-1), 0, 0, {}),
        (f"fixed_depth stage={mid} g=1", PolicyConfig(name="fixed_depth", stage=mid), 1, 0, {}),
        ("speculative g=1", PolicyConfig(name="speculative"), 1, 0, {}),
        ("speculative g=4", PolicyConfig(name="speculative"), 4, 0, {}),
        ("single last", PolicyConfig(name="single", stage=-1), 0, 0, {}),
        (f"single stage={mid}", PolicyConfig(name="single", stage=mid), 0, 0, {}),
        ("threshold tau=0.6 g=1", PolicyConfig(name="threshold", tau=0.6), 1, 0,
         dict(predictor=PriorPredictor(r_prior=r_prior))),
        ("oracle lam=10", PolicyConfig(name="oracle", lam=10.0), 0, 0, {}),
    ]
    return out


def run_matrix(dirs, eos, prompts, own, order: str, device: str = "cpu", dtype: str = "float64") -> dict:
    """Run every configuration on one set of fast engines in ``order``; per configuration the final stages,
    the records and the rows whose tokens differ from their final stage's own output ``own[k]``."""
    K, N = len(dirs), len(prompts)
    engines = [HFEngine(d, dtype=dtype, device=device, fast=True, name=f"s{k}") for k, d in enumerate(dirs)]
    cfgs = configurations(K)
    if order == "reverse":
        cfgs = cfgs[::-1]
    outcome = np.array([[own[k][i] == own[-1][i] for k in range(K)] for i in range(N)])
    report = {}
    for label, policy, gamma, drafter, kw in cfgs:
        c = Cascade(engines, CascadeConfig(max_new_tokens=MAX_NEW, gamma=gamma, regen_drafter=drafter,
                                           batch_size=BATCH), policy, eos_token_ids=(eos,), **kw)
        rec = c.run(prompts, outcome=outcome if policy.name == "oracle" else None)
        fs = rec["final_stage"].astype(int)
        bad = [(i, int(fs[i])) for i in range(N) if rec["tokens"][i].tolist() != own[fs[i]][i]]
        report[label] = dict(final=fs, bad=bad, rec=rec)
    return report


def explain_mismatch(model_dir, prompt, got, ref) -> dict:
    """Where ``got`` leaves ``ref`` (stage ``model_dir``'s own output), the float64 logits of that model
    on prompt + the common prefix: a float tie when the two tokens' logits differ by less than
    ``TIE_GAP`` (relative to the largest logit) and are the top two."""
    from transformers import AutoModelForCausalLM

    t = next((j for j, (a, b) in enumerate(zip(got, ref)) if a != b), min(len(got), len(ref)))
    if t >= min(len(got), len(ref)):  # one is a strict prefix of the other: a stop rule broke, no tie
        return dict(pos=t, tie=False, gap=math.inf)
    m = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float64).eval()
    with torch.no_grad():
        lg = m(input_ids=torch.tensor([list(prompt) + list(ref[:t])])).logits[0, -1]
    top2 = set(torch.topk(lg, 2).indices.tolist())
    gap = float(abs(lg[got[t]] - lg[ref[t]]))
    scale = max(1.0, float(lg.abs().max()))
    return dict(pos=t, got=got[t], ref=ref[t], gap=gap, tie=gap <= TIE_GAP * scale and {got[t], ref[t]} == top2)


TIE_GAP = 1e-4  # float32 on a GPU: batch-dependent kernels round logits at ~1e-6 relative; real gaps are >> this


@pytest.mark.parametrize("order", ["forward", "reverse"])
def test_every_policy_is_lossless_in_either_order(hierarchy, order):
    dirs, eos, prompts, own = hierarchy
    K, last, mid = len(dirs), len(dirs) - 1, max(1, len(dirs) // 2)
    rep = run_matrix(dirs, eos, prompts, own, order)
    assert {k: v["bad"] for k, v in rep.items() if v["bad"]} == {}  # float64: not even a tie may flip
    fin = {k: v["final"] for k, v in rep.items()}
    for label in ("dp lam=inf g=0", "fixed_depth g=0", "speculative g=4", "single last"):
        assert (fin[label] == last).all(), label
    assert (fin["dp lam=0"] == 0).all() and (fin[f"single stage={mid}"] == mid).all()
    assert (fin[f"fixed_depth stage={mid} g=1"] == mid).all()
    assert set(fin["random g=2 d=0"].tolist()) != {last}  # the random route stops at several stages
    if K > 2:
        assert (fin["threshold tau=0.6 g=1"] == 1).all() and (fin["dp lam=1 cost model"] < last).all()
    # the drafts were partly accepted: verification truncated and went on (the paths under test)
    rec = rep["fixed_depth g=3 d=0"]["rec"]
    assert (0 < rec["accepted_len"][:, 1:]).any()
    assert (rec["accepted_len"][:, 1:] < rec["draft_len"][:, :-1]).any()


def test_known_crash_orders_on_shared_engines(hierarchy):
    """The two orders that broke the static path: fixed depth with a middle-stage regeneration drafter, and
    a speculative run after a dp run on the same engines (decoders first built inside inference mode)."""
    dirs, eos, prompts, own = hierarchy
    K = len(dirs)
    engines = [HFEngine(d, dtype="float64", device="cpu", fast=True) for d in dirs]
    runs = [(PolicyConfig(name="dp", lam=math.inf), 0, 0), (PolicyConfig(name="speculative"), 2, 0)]
    if K >= 3:
        runs.insert(0, (PolicyConfig(name="fixed_depth", stage=-1), 1, K - 2))
    for policy, gamma, drafter in runs:
        rec = Cascade(engines, CascadeConfig(max_new_tokens=MAX_NEW, gamma=gamma, regen_drafter=drafter,
                                             batch_size=BATCH), policy, eos_token_ids=(eos,)).run(prompts)
        assert [t.tolist() for t in rec["tokens"]] == own[-1], policy.name


def test_decoder_built_in_inference_mode_serves_sessions_outside_it(hierarchy):
    """A verification (inference mode) builds the engine's decoder; a session opened afterwards outside
    inference mode (a drafter's, as speculative decoding opens it) appends and truncates on it."""
    dirs, eos, prompts, own = hierarchy
    eng = HFEngine(dirs[-1], dtype="float64", device="cpu", fast=True)
    P = GenerationParams(MAX_NEW, eos_token_ids=(eos,))
    eng.score(prompts[:3], [t[:2] for t in own[-1][:3]], P, keep_session=False)
    assert eng._decoder is not None and not eng._decoder.kv.is_inference()
    assert not torch.is_inference_mode_enabled()
    sess = eng.new_session(3)
    res = sess.extend([list(p) for p in prompts[:3]], [MAX_NEW] * 3, P)
    sess.truncate([len(p) for p in prompts[:3]])
    sess.close()
    assert [t.tolist() for t in res.tokens] == own[-1][:3]


# ---- on a CUDA device (CUDA-graph replay): the same matrix in float32, and the configuration that broke it --
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (CUDA-graph replay)")


def _own(dirs, prompts, eos, device, dtype, max_new=MAX_NEW):
    P = GenerationParams(max_new, eos_token_ids=(eos,))
    return [[t.tolist() for t in HFEngine(d, dtype=dtype, device=device, fast=True).generate(prompts, P).tokens]
            for d in dirs]


def _ties_only(dirs, prompts, own, rep) -> int:
    """Assert that every mismatch of ``rep`` is a float tie (printed); returns how many there were."""
    n = 0
    for label, v in rep.items():
        for i, k in v["bad"]:
            why = explain_mismatch(dirs[k], prompts[i], v["rec"]["tokens"][i].tolist(), own[k][i])
            print(f"{label}: sample {i} (stage {k}) differs at {why}")
            assert why["tie"], (label, i, why)
            n += 1
    return n


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("order", ["forward", "reverse"])
def test_every_policy_is_lossless_in_either_order_cuda(hierarchy, order):
    dirs, eos, prompts, _ = hierarchy
    own = _own(dirs, prompts, eos, "cuda", "float32")
    rep = run_matrix(dirs, eos, prompts, own, order, device="cuda", dtype="float32")
    ties = _ties_only(dirs, prompts, own, rep)
    rows = sum(len(prompts) for _ in rep)
    print(f"cuda K={len(dirs)} {order}: {len(rep)} configurations x {len(prompts)} prompts = {rows} rows, "
          f"{ties} float ties, 0 other mismatches")


def _issue_hierarchy(root, device: str):
    """The configuration that broke the GPU path: 4 stages; final: vocabulary 4,099, hidden 96, 3 layers,
    4 heads over 2 KV heads, head dim 80; stages 1-2 perturbed copies of it; stage 0 an independent model
    with head dim 16; context 907 (= the longest prompt 900 + 7 new tokens); EOS = pad id = a token the final
    model emits; 17 ragged prompts of 1-900 tokens."""
    V, ctx = 4099, 907
    shape = dict(vocab_size=V, hidden_size=96, num_layers=3, num_heads=4, num_kv_heads=2, head_dim=80,
                 intermediate_size=192, max_position_embeddings=ctx, seed=5, init_std=0.3)
    rng = np.random.default_rng(17)
    lens = [1, 900] + rng.integers(1, 901, 15).tolist()
    prompts = [rng.integers(0, V, n).tolist() for n in lens]
    probe = HFEngine(save_random_qwen2(root / "probe", **shape), dtype="float32", device=device, fast=True)
    out = probe.generate(prompts, GenerationParams(7)).tokens
    eos = int(np.bincount(np.concatenate(out), minlength=V).argmax())
    s3 = save_random_qwen2(root / "s3", eos_token_id=eos, pad_token_id=eos, **shape)
    s0 = save_random_qwen2(root / "s0", vocab_size=V, hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2,
                           head_dim=16, intermediate_size=128, max_position_embeddings=ctx, seed=6, init_std=0.3,
                           eos_token_id=eos, pad_token_id=eos)
    dirs = [s0, save_perturbed(s3, root / "s1", noise=0.1, seed=1), save_perturbed(s3, root / "s2", noise=0.05,
                                                                                     seed=2), s3]
    return dirs, eos, prompts


def _run_reference_configuration(root, device: str) -> None:
    """Fixed depth, γ 0, cascade batch 4 < 17 prompts, max_new_tokens 7 on the configuration above: no
    device-side assert (the CUDA context stays usable), and lossless; then, on the same engines, γ ≥ 1 with
    a middle-stage drafter, two-model speculative decoding and dp: lossless too (float32; ties explained)."""
    dirs, eos, prompts = _issue_hierarchy(root, device)
    own = _own(dirs, prompts, eos, device, "float32", max_new=7)
    assert any(eos in t for t in own[-1])                                       # EOS (= pad) ends some rows
    engines = [HFEngine(d, dtype="float32", device=device, fast=True) for d in dirs]
    assert engines[-1]._decoder is None and engines[-1].max_context == 907
    rep = {}
    for label, policy, gamma, drafter in [("fixed_depth g=0", PolicyConfig(name="fixed_depth"), 0, 0),
                                          ("fixed_depth g=2 d=2", PolicyConfig(name="fixed_depth"), 2, 2),
                                          ("speculative g=3", PolicyConfig(name="speculative"), 3, 0),
                                          ("dp lam=inf g=1 d=1", PolicyConfig(name="dp", lam=math.inf), 1, 1)]:
        rec = Cascade(engines, CascadeConfig(max_new_tokens=7, gamma=gamma, regen_drafter=drafter, batch_size=4),
                      policy, eos_token_ids=(eos,)).run(prompts)
        if device == "cuda":
            torch.cuda.synchronize()                                            # a device assert surfaces here
        assert (rec["final_stage"] == 3).all()
        rep[label] = dict(rec=rec, bad=[(i, 3) for i in range(len(prompts)) if rec["tokens"][i].tolist() != own[3][i]])
    ties = _ties_only(dirs, prompts, own, rep)
    assert float((torch.ones(4, device=device) * 2).sum()) == 8.0               # the device is still usable
    print(f"reference configuration on {device}: {len(rep)} runs x 17 prompts, {ties} float ties, 0 other mismatches")


@pytest.mark.gpu
@needs_cuda
def test_reference_configuration_cuda(tmp_path):
    _run_reference_configuration(tmp_path, "cuda")


@pytest.mark.slow
def test_reference_configuration_cpu(tmp_path):
    """The same on the CPU (eager steps, no graphs)."""
    _run_reference_configuration(tmp_path, "cpu")
