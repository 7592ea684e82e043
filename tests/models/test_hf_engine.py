"""HFEngine: our decode loop against transformers' own generate, score/continue consistency, bad input."""
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is not installed (the engines need it)")

from hf_reference import hf_generate as _hf_generate, ragged_prompts

from asd.models.base import GenerationParams
from asd.models.hf import HFEngine
from asd.models.random_init import save_random_qwen2

EOS = 2


def hf_generate(model, prompts, max_new, eos=EOS):
    return _hf_generate(model, prompts, max_new, eos)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_random_qwen2(tmp_path_factory.mktemp("m") / "m", hidden_size=32, num_layers=2, num_heads=4,
                             num_kv_heads=2, intermediate_size=64, seed=3, init_std=0.3,
                             max_position_embeddings=128)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_generate_matches_transformers_generate(model_dir, dtype):
    eng = HFEngine(model_dir, dtype=dtype, device="cpu")
    prompts = ragged_prompts(32, seed=1)
    res = eng.generate(prompts, GenerationParams(max_new_tokens=20, eos_token_ids=(EOS,)))
    ref = hf_generate(eng.model, prompts, 20)
    assert [t.tolist() for t in res.tokens] == ref
    assert any(len(t) < 20 for t in ref) and any(len(t) == 20 for t in ref)  # both stop reasons occur
    assert all(s.shape == (len(t), 5) for s, t in zip(res.stats, res.tokens))
    # the stats' argmax column is the greedy token
    assert all((s[:, 4].astype(np.int64) == t).all() for s, t in zip(res.stats, res.tokens))


def test_score_agrees_with_generate_and_continues(model_dir):
    eng = HFEngine(model_dir, dtype="float64", device="cpu")
    prompts = ragged_prompts(12, seed=2)
    P = GenerationParams(max_new_tokens=16, eos_token_ids=(EOS,), hidden=True, prompt_nll=True)
    gen = eng.generate(prompts, P)
    sc = eng.score(prompts, gen.tokens, P, keep_session=True)
    for t, s, lp, a in zip(gen.tokens, gen.stats, sc.logprobs, sc.argmax):
        assert (a[:len(t)] == t).all()                       # teacher-forced argmax = greedy tokens
        np.testing.assert_allclose(lp, s[:, 3], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(sc.prompt_nll, gen.prompt_nll, rtol=1e-9)
    assert sc.hidden.shape == (12, 32) and np.isfinite(sc.hidden).all()
    # truncate every row to a prefix of its response, force the greedy token, continue: same as generate
    sess = sc.session
    keep = [max(0, len(t) // 2) for t in gen.tokens]
    sess.truncate([len(p) + k for p, k in zip(prompts, keep)])
    first = np.array([t[k] for t, k in zip(gen.tokens, keep)])
    out = sess.decode(first, None, [16 - k for k in keep], P)
    for t, k, o in zip(gen.tokens, keep, out.tokens):
        assert np.concatenate([t[:k], o]).tolist() == t.tolist()


def test_append_reads_next_token_distributions(model_dir):
    eng = HFEngine(model_dir, dtype="float64", device="cpu")
    prompts = ragged_prompts(5, seed=4)
    P = GenerationParams(max_new_tokens=8)
    gen = eng.generate(prompts, P)
    sc = eng.score(prompts, [t[:3] for t in gen.tokens], P, keep_session=True)
    sess = sc.session
    sess.truncate([len(p) + 1 for p in prompts])
    ap = sess.append([t[1:4].tolist() for t in gen.tokens], P, with_probs=True)
    for t, a, pr in zip(gen.tokens, ap.argmax, ap.probs):
        assert a[:2].tolist() == t[2:4].tolist()
        np.testing.assert_allclose(pr.sum(-1), 1.0, rtol=1e-6)


def test_sampling_is_seeded_per_row(model_dir):
    eng = HFEngine(model_dir, dtype="float32", device="cpu")
    prompts = ragged_prompts(6, seed=5)
    P = GenerationParams(max_new_tokens=10, temperature=1.0, keep_probs=True)
    a = eng.generate(prompts, P, seeds=list(range(6)))
    b = eng.generate(prompts[2:4], P, seeds=[2, 3])                   # same rows, other batch
    assert [t.tolist() for t in a.tokens[2:4]] == [t.tolist() for t in b.tokens]
    assert a.probs[0].shape == (10, 99)
    c = eng.generate(prompts, P, seeds=list(range(10, 16)))
    assert [t.tolist() for t in a.tokens] != [t.tolist() for t in c.tokens]


def test_bfloat16_runs(model_dir):
    eng = HFEngine(model_dir, dtype="bfloat16", device="cpu")
    res = eng.generate(ragged_prompts(4), GenerationParams(max_new_tokens=5))
    assert all(len(t) == 5 for t in res.tokens)


def test_bad_input(model_dir):
    eng = HFEngine(model_dir, dtype="float32", device="cpu")
    P = GenerationParams(max_new_tokens=8)
    with pytest.raises(ValueError, match="prompt 1 is empty"):
        eng.generate([[5, 6], []], P)
    with pytest.raises(ValueError, match="context of 128"):
        eng.generate([[5] * 125], P)
    with pytest.raises(ValueError, match=r"outside \[0, 99\)"):
        eng.generate([[5, 400]], P)
    with pytest.raises(ValueError, match="unknown dtype"):
        HFEngine(model_dir, dtype="int8")
    with pytest.raises(ValueError, match="max_new_tokens"):
        GenerationParams(max_new_tokens=0)
    with pytest.raises(ValueError, match="2 prompts but 1 continuations"):
        eng.score([[5], [6]], [[7]])


def test_protocol_conformance_and_processing(model_dir):
    from asd.models.base import Engine, Session
    from asd.models.hf import process_logits

    eng = HFEngine(model_dir, dtype="float32", device="cpu")
    assert isinstance(eng, Engine)
    assert isinstance(eng.score([[5, 6]], [[7]], keep_session=True).session, Session)
    lg = torch.tensor([[2.0, 1.0, 0.0, -1.0]])
    p = process_logits(lg, GenerationParams(temperature=1.0, top_k=2))
    assert (p[0, 2:] == 0).all() and torch.isclose(p.sum(), torch.tensor(1.0))
    p = process_logits(lg, GenerationParams(temperature=1.0, top_p=0.5))
    assert p[0, 0] == 1.0                      # the top token alone already covers half the mass
    p = process_logits(lg, GenerationParams(temperature=0.5))
    torch.testing.assert_close(p, torch.softmax(lg / 0.5, -1))


def test_static_cache_path_matches_and_continues(model_dir):
    """HFEngine(fast=True): StaticSession over the static-cache decoder; same tokens, same continuation."""
    slow = HFEngine(model_dir, dtype="float64", device="cpu")
    fast = HFEngine(model_dir, dtype="float64", device="cpu", fast=True)
    prompts = ragged_prompts(10, seed=7)
    P = GenerationParams(max_new_tokens=16, eos_token_ids=(EOS,), hidden=True, prompt_nll=True)
    a, b = slow.generate(prompts, P), fast.generate(prompts, P)
    assert [t.tolist() for t in a.tokens] == [t.tolist() for t in b.tokens]
    np.testing.assert_allclose(a.prompt_nll, b.prompt_nll, rtol=1e-9)
    np.testing.assert_allclose(a.hidden, b.hidden, rtol=1e-6, atol=1e-9)
    sc = fast.score(prompts, b.tokens, P, keep_session=True)
    keep = [len(t) // 3 for t in b.tokens]
    sc.session.truncate([len(p) + k for p, k in zip(prompts, keep)])
    out = sc.session.decode(np.array([t[k] for t, k in zip(b.tokens, keep)]), None, [16 - k for k in keep], P)
    for t, k, o in zip(b.tokens, keep, out.tokens):
        assert np.concatenate([t[:k], o]).tolist() == t.tolist()
    sc.session.close()


def test_static_path_shares_one_decoder_across_sessions_and_modes(model_dir):
    """generate and score (without keep_session) hand the engine's static decoder back, so the next session
    reuses it (no fresh cache per call); it was built inside inference mode (by generate) and serves a
    session opened outside it (as a drafter's session is), in place, with the same tokens."""
    fast = HFEngine(model_dir, dtype="float64", device="cpu", fast=True)
    prompts = ragged_prompts(6, seed=8)
    P = GenerationParams(max_new_tokens=10, eos_token_ids=(EOS,))
    ref = [t.tolist() for t in fast.generate(prompts, P).tokens]
    dec = fast._decoder
    assert dec is not None and fast._decoder_owner is None and not dec.kv.is_inference()
    sc = fast.score(prompts, [t[:3] for t in ref], P)
    assert fast._decoder is dec and fast._decoder_owner is None and sc.session is None
    assert not torch.is_inference_mode_enabled()
    sess = fast.new_session(len(prompts))
    assert sess.dec is dec and fast._decoder_owner is sess
    other = fast.new_session(2)  # a second live session gets a private decoder
    assert other.dec is not dec
    other.close()
    out = sess.extend([list(p) for p in prompts], [10] * len(prompts), P)
    sess.close()
    assert [t.tolist() for t in out.tokens] == ref and fast._decoder_owner is None
