"""The cost profiler (asd/profiler.py) and ``asd profile`` on CPU with tiny random Qwen2 models."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from asd.costs_io import load_cost_model  # noqa: E402
from asd.models.shapes import QWEN25, known_shape, param_count  # noqa: E402
from asd.profiler import (fit_cost_model, floor_ratios, load_profile, measure_decode, measure_prefill,  # noqa: E402
                          profile_stage, save_profile)
from asd.profiler_config import ProfilerConfig  # noqa: E402

SMALL = ProfilerConfig(prefill_tokens=[4, 8, 16], decode_batch_sizes=[1, 2], decode_context=8, decode_steps=2,
                       warmup=0, repeats=2)


def tiny(seed=0, layers=2, hidden=32):
    torch.manual_seed(seed)
    cfg = transformers.Qwen2Config(vocab_size=64, hidden_size=hidden, intermediate_size=2 * hidden,
                                   num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2)
    return transformers.Qwen2ForCausalLM(cfg).eval()


def test_profile_stage_records_every_point():
    model = tiny()
    rec = profile_stage(model, SMALL, copy_bw=1e9, eager_batch_sizes=[1])
    assert rec["weight_bytes"] == sum(p.numel() * 4 for p in model.parameters())
    assert rec["floor_s"] == pytest.approx(rec["weight_bytes"] / 1e9)
    assert rec["prefill"]["tokens"] == SMALL.prefill_tokens
    assert rec["decode"]["batch_sizes"] == SMALL.decode_batch_sizes
    assert rec["eager_decode"]["batch_sizes"] == [1]
    for part in (rec["prefill"], rec["decode"]):
        assert all(len(s) == SMALL.repeats and min(s) > 0 for s in part["samples"])
    for key in ("seconds", ):
        assert rec["prefill"][key] == [float(np.median(s)) for s in rec["prefill"]["samples"]]


def test_prefill_path_eager_times_the_engines_pass(monkeypatch):
    from asd.models.cuda_graph import StaticDecoder

    calls = []
    real = StaticDecoder.prefill

    def prefill(self, ids, lengths, all_logits=False):
        calls.append((tuple(ids.shape), all_logits))
        return real(self, ids, lengths, all_logits)

    monkeypatch.setattr(StaticDecoder, "prefill", prefill)
    cfg = ProfilerConfig(**{**SMALL.__dict__, "prefill_path": "eager"})
    rec = profile_stage(tiny(), cfg)
    assert rec["prefill"]["path"] == "eager" and rec["prefill"]["graphs"] is False
    # every timed (and warm-up) pass is StaticDecoder.prefill over [1, n] with the logits of every position
    # (the decode measurement's own fill of the cache is the one pass without them)
    passes = [c for c in calls if c[1]]
    assert set(passes) == {((1, n), True) for n in SMALL.prefill_tokens}
    assert len(passes) == len(SMALL.prefill_tokens) * (SMALL.warmup + SMALL.repeats)
    assert profile_stage(tiny(), SMALL)["prefill"]["path"] == "graph"
    with pytest.raises(ValueError, match=r"prefill_path must be one of \['graph', 'eager'\], got 'jit'"):
        ProfilerConfig(prefill_path="jit")


def test_measurements_leave_the_model_usable():
    model = tiny(1)
    ids = torch.randint(0, 64, (1, 6))
    before = model(input_ids=ids).logits
    measure_prefill(model, [4, 8], 0, 1)
    measure_decode(model, [1, 2], 8, 2, 0, 1)
    torch.testing.assert_close(model(input_ids=ids).logits, before)


def synthetic_profile(weights=(1.0, 2.0, 4.0)):
    """Exactly linear measurements: prefill a + b·n, decode c + d·batch, per stage scaled by weight."""
    stages = []
    for i, w in enumerate(weights):
        toks, bs = [64, 128, 256], [1, 8, 16]
        stages.append({"name": f"s{i}", "weight_bytes": int(w * 1e9), "floor_s": w * 1e-3,
                       "prefill": {"tokens": toks, "seconds": [w * (0.01 + 2e-5 * n) for n in toks]},
                       "decode": {"batch_sizes": bs, "seconds_per_step": [w * (4e-3 + 1e-5 * b) for b in bs]}})
    return {"schema_version": 1, "copy_bandwidth_Bps": 1e12, "stages": stages,
            "provenance": {"git_revision": "abc", "environment": {"gpu": "test"}}}


def test_fit_recovers_lines_and_ratios():
    prof = synthetic_profile()
    model = fit_cost_model(prof)
    for st, w in zip(model.stages, (1.0, 2.0, 4.0)):
        assert st.prefill.slope == pytest.approx(w * 2e-5) and st.prefill.intercept == pytest.approx(w * 0.01)
        assert st.decode.slope == pytest.approx(w * 1e-5) and st.decode.intercept == pytest.approx(w * 4e-3)
        assert st.prefill.residual_std == pytest.approx(0.0, abs=1e-12)
    ratios = floor_ratios(model, prof)
    assert [r["measured"] for r in ratios] == pytest.approx([0.25, 0.5, 1.0])
    assert [r["floor"] for r in ratios] == pytest.approx([0.25, 0.5, 1.0])
    assert model.provenance["measured"]["environment"] == {"gpu": "test"}


def test_extrapolated_stage_is_appended():
    prof = synthetic_profile((1.0, 2.0))
    prof["extrapolated"] = {"big": {"weight_bytes": int(8e9), "floor_s": 8e-3, "layers_measured": [4, 2],
                                    "prefill_tokens": [64, 128], "prefill_seconds": [0.1, 0.2],
                                    "batch_sizes": [1], "decode_seconds_per_step": [0.05]}}
    model = fit_cost_model(prof)
    assert [s.name for s in model.stages] == ["s0", "s1", "big"]
    assert model.stages[-1].step_s(4) == pytest.approx(0.05)          # one batch size: flat in batch
    assert model.provenance["measured"]["stages"][-1]["extrapolated"] is True


def test_profile_json_round_trip(tmp_path):
    prof = synthetic_profile()
    path = save_profile(prof, tmp_path / "p.json")
    assert load_profile(path) == json.loads(json.dumps(prof))
    bad = dict(prof, schema_version=99)
    save_profile(bad, tmp_path / "bad.json")
    with pytest.raises(ValueError, match="schema_version"):
        load_profile(tmp_path / "bad.json")


def test_asd_profile_command_end_to_end(tmp_path):
    """Measure two saved tiny models through the CLI, then load the written cost model."""
    from asd.cli import main

    for i, (layers, hidden) in enumerate([(1, 32), (3, 64)]):
        tiny(i, layers, hidden).save_pretrained(tmp_path / f"m{i}")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "cost_profiling:\n  prefill_tokens: [4, 8, 16]\n  decode_batch_sizes: [1, 2]\n  decode_context: 8\n"
        "  decode_steps: 2\n  warmup: 0\n  repeats: 2\n"
        "hierarchy:\n  name: tiny\n  stages:\n"
        f"    - {{name: a, model: '{tmp_path / 'm0'}', dtype: float32}}\n"
        f"    - {{name: b, model: '{tmp_path / 'm1'}', dtype: float32}}\n")
    out = tmp_path / "costs" / "cpu.json"
    assert main(["profile", "--config", str(cfg), "--device", "cpu", "--out", str(out)]) == 0
    model = load_cost_model(out)
    assert [s.name for s in model.stages] == ["a", "b"]
    assert all(s.decode.intercept + s.decode.slope > 0 for s in model.stages)
    assert model.provenance["measured"]["environment"]["torch"] == torch.__version__
    raw = load_profile(tmp_path / "costs" / "cpu.measurements.json")
    assert [s["name"] for s in raw["stages"]] == ["a", "b"]
    # refit from the raw measurements gives the same model
    out2 = tmp_path / "costs" / "refit.json"
    assert main(["profile", "--from-measurements", str(tmp_path / "costs" / "cpu.measurements.json"),
                 "--out", str(out2)]) == 0
    assert load_cost_model(out2).stages == model.stages


def test_shapes_match_built_models():
    assert known_shape("Qwen/Qwen2.5-7B-Instruct") == QWEN25["7b"]
    assert known_shape("qwen/qwen2.5-72b") == QWEN25["72b"]
    assert known_shape("Qwen/Qwen2-7B") is None
    shape = dict(QWEN25["7b"], hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, vocab_size=100)
    model = transformers.Qwen2ForCausalLM(transformers.Qwen2Config(**shape))
    assert param_count(shape) == sum(p.numel() for p in model.parameters())


def test_unknown_model_without_weights_is_a_value_error():
    from asd.profiler import build_model

    with pytest.raises(ValueError, match="known shape"):
        build_model("nobody/nothing", "float32", "cpu", random_weights=True)
    with pytest.raises(ValueError, match="random-weights"):
        build_model("Qwen/Qwen2.5-7B", "bfloat16", "cpu", random_weights=False)


def test_profile_by_depth_counts_the_full_model():
    """Built with 2 of 4 layers: weights counted for 4, every point extrapolated from 2 and 1 layers."""
    from asd.profiler import profile_stage_by_depth

    full = tiny(5, layers=4)
    part = tiny(5, layers=2)
    rec = profile_stage_by_depth(part, 4, SMALL, copy_bw=1e9)
    assert rec["extrapolated"] and rec["depth"]["layers_measured"] == [2, 1]
    assert rec["weight_bytes"] == sum(p.numel() * p.element_size() for p in full.parameters())
    m2, m1 = rec["depth"]["measured"]["2"], rec["depth"]["measured"]["1"]
    for a, b, got in zip(m2["decode"]["seconds_per_step"], m1["decode"]["seconds_per_step"],
                         rec["decode"]["seconds_per_step"]):
        assert got == pytest.approx(a + (a - b) * 2)
    assert m2["decode"]["layers"] == 2 and m1["prefill"]["layers"] == 1
    model = fit_cost_model({"schema_version": 1, "stages": [dict(rec, name="x")], "provenance": {}})
    assert model.provenance["measured"]["stages"][0]["layers_measured"] == [2, 1]


def test_layers_that_fit():
    from asd.profiler import _layers_that_fit

    cfg = transformers.Qwen2Config(**QWEN25["72b"])
    assert _layers_that_fit(cfg, 2, 200e9) is None                    # 145 GB fits in 200 GB
    n = _layers_that_fit(cfg, 2, 80e9)
    per_layer = (param_count(dict(QWEN25["72b"], num_hidden_layers=1)) - param_count(dict(QWEN25["72b"], num_hidden_layers=0))) * 2
    rest = param_count(dict(QWEN25["72b"], num_hidden_layers=0)) * 2
    assert rest + n * per_layer <= 0.88 * 80e9 < rest + (n + 1) * per_layer
    with pytest.raises(ValueError, match="fit"):
        _layers_that_fit(cfg, 2, 4e9)


def test_time_fn_runs_sync_before_each_timed_call():
    from asd.profiler import time_fn

    calls = []
    secs = time_fn(lambda: calls.append("fn"), "cpu", warmup=2, repeats=3, sync=lambda: calls.append("sync"))
    assert len(secs) == 3 and all(s >= 0 for s in secs)
    assert calls == ["fn", "fn"] + ["sync", "fn"] * 3


# ---- tensor-parallel stage (python -m asd.models.tensor_parallel results committed under results/gpu/) ---
ROOT_DIR = Path(__file__).resolve().parents[1]
H100_PROFILE = ROOT_DIR / "configs/costs/h100-qwen2.5.measurements.json"
H200_TP = ROOT_DIR / "results/gpu/tp72b_h200x4.json"
H200_QUICK = ROOT_DIR / "results/gpu/decode_quick_h200x4_gpu0.json"
H200_PROFILE = ROOT_DIR / "results/gpu/profile_h200x4_gpu0.json"       # 7B-32B, GPU 0 of the 4 x H200
H200_TP3 = ROOT_DIR / "results/gpu/tp72b_h200x4_run3.json"             # the same machine, all 4 GPUs
H200_TABLE = ROOT_DIR / "configs/costs/h200-qwen2.5-tp4.json"                # fitted from run 4's two files
H200_PROFILE4 = ROOT_DIR / "results/gpu/profile_h200x4_run4_gpu0.json"
H200_TP4 = ROOT_DIR / "results/gpu/tp72b_h200x4_run4.json"


def test_tensor_parallel_run_of_another_card_is_refused():
    """The committed H100 profile and the 4 x H200 TP run: never combined, the error names both cards."""
    from asd.profiler import add_tensor_parallel

    with pytest.raises(ValueError, match="H200.*H100|H100.*H200"):
        add_tensor_parallel(load_profile(H100_PROFILE), json.loads(H200_TP.read_text()), str(H200_TP))


def test_quick_profile_cannot_be_fitted_and_writes_nothing(tmp_path, capsys):
    """The H200 --quick profile (7B-32B, prefill at 512 only) + its same-card TP run: clear errors, no file."""
    from asd.cli import main

    with pytest.raises(ValueError, match="'7b'.*prefill measured at 1 prompt length"):
        fit_cost_model(load_profile(H200_QUICK))
    out = tmp_path / "h200.json"
    rc = main(["profile", "--from-measurements", str(H200_QUICK), "--tensor-parallel", str(H200_TP), "--out", str(out)])
    assert rc != 0 and "'7b': prefill measured at 1 prompt length" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_tensor_parallel_stage_replaces_the_extrapolated_one(tmp_path):
    """Same-card case: the TP run (wall clock, 4 GPUs) becomes the final stage; ratios in both units."""
    from asd.profiler import add_tensor_parallel, floor_ratios, stage_records

    prof = load_profile(H100_PROFILE)
    tp = json.loads(H200_TP.read_text())
    tp["device"] = prof["provenance"]["environment"]["gpu"]   # a fixture: pretend the TP run shares the card
    merged = add_tensor_parallel(prof, tp, "fixture")
    assert "72b" not in merged.get("extrapolated", {}) and "72b" in prof["extrapolated"]   # input untouched
    recs = stage_records(merged)
    assert [r["name"] for r in recs] == ["7b", "14b", "32b", "72b"] and recs[-1]["devices"] == 4
    model = fit_cost_model(merged)
    assert model.stages[-1].step_s(1) == pytest.approx(tp["decode"]["1"], rel=1e-9)
    assert model.stages[-1].step_s(8) == pytest.approx(tp["decode"]["8"], rel=1e-9)
    assert model.stages[-1].prefill(512) == pytest.approx(tp["prefill"]["512"], rel=0.1)
    rows = floor_ratios(model, merged)
    assert rows[-1]["measured"] == 1 and rows[-1]["devices"] == 4
    assert rows[0]["measured_device_seconds"] == pytest.approx(rows[0]["measured"] / 4)
    assert rows[0]["floor"] == pytest.approx(recs[0]["weight_bytes"] / (tp["weight_bytes_per_rank"] * 4))
    bigger = dict(tp, args=dict(tp["args"], size="405b"), weight_bytes_per_rank=tp["weight_bytes_per_rank"] * 6)
    assert [r["name"] for r in stage_records(add_tensor_parallel(merged, bigger, "fixture"))] == \
        ["7b", "14b", "32b", "72b", "405b"]


def test_tensor_parallel_stage_absent_from_the_profile_becomes_the_final_one():
    """The H200 profile has 7B-32B only; the same machine's TP run adds 72B as the final stage."""
    from asd.profiler import add_tensor_parallel, stage_records

    prof, tp = load_profile(H200_PROFILE), json.loads(H200_TP3.read_text())
    assert [r["name"] for r in prof["stages"]] == ["7b", "14b", "32b"] and not prof.get("extrapolated")
    merged = add_tensor_parallel(prof, tp, str(H200_TP3))
    recs = stage_records(merged)
    assert [r["name"] for r in recs] == ["7b", "14b", "32b", "72b"] and len(prof["stages"]) == 3
    assert recs[-1]["devices"] == 4 and recs[-1]["weight_bytes"] == 4 * tp["weight_bytes_per_rank"]
    model = fit_cost_model(merged)
    assert model.stages[-1].step_s(1) == pytest.approx(tp["decode"]["1"], rel=1e-9)
    assert model.stages[0].step_s(1) == pytest.approx(prof["stages"][0]["decode"]["seconds_per_step"][0], rel=0.02)


def test_new_tensor_parallel_stage_smaller_than_a_profiled_one_is_refused():
    from asd.profiler import add_tensor_parallel

    prof, tp = load_profile(H200_PROFILE), json.loads(H200_TP3.read_text())
    small = dict(tp, args=dict(tp["args"], size="20b"), weight_bytes_per_rank=5 * 10**9)   # 20 GB < 32B's 66 GB
    with pytest.raises(ValueError, match="'20b' not in the profile.*not larger than '32b'.*only be the final one"):
        add_tensor_parallel(prof, small, "fixture")


def test_committed_h200_table_is_the_refit_of_its_measurements(tmp_path):
    """configs/costs/h200-qwen2.5-tp4.json is what `asd profile --from-measurements --tensor-parallel` gives
    from the committed raw files (same fits, same card, same revision)."""
    from asd.cli import main

    out = tmp_path / "h200.json"
    assert main(["profile", "--from-measurements", str(H200_PROFILE4), "--tensor-parallel", str(H200_TP4),
                 "--out", str(out)]) == 0
    new, old = json.loads(out.read_text()), json.loads(H200_TABLE.read_text())
    assert [s["name"] for s in new["stages"]] == [s["name"] for s in old["stages"]] == ["7b", "14b", "32b", "72b"]
    for a, b in zip(new["stages"], old["stages"]):
        for part in ("prefill", "decode"):
            assert a[part]["slope"] == pytest.approx(b[part]["slope"], rel=1e-12)
            assert a[part]["intercept"] == pytest.approx(b[part]["intercept"], rel=1e-12)
    assert old["provenance"]["measured"]["environment"]["gpu"] == "NVIDIA H200"
    tp = json.loads(H200_TP4.read_text())
    assert sorted(map(int, tp["decode"])) == [1, 8, 16, 32]   # every batch size of the table measured at TP 4
