"""Summary tables of traces, on hand-computed arrays."""
import numpy as np

from asd.report.summary import format_summary, plot_summary, summarize


def _data():
    # 3 samples, K = 3. s0 ran on all; sample 0 stopped at 0; sample 1 went 0 → 2; sample 2 went 0 → 1 → 2.
    return {
        "dataset": np.array(["a", "b", "b"], dtype=object),
        "score": np.array([1.0, 0.0, np.nan]),
        "final_stage": np.array([0, 2, 2]),
        "ran": np.array([[1, 0, 0], [1, 0, 1], [1, 1, 1]], dtype=bool),
        "draft_len": np.array([[4, 0, 0], [6, 0, 6], [8, 8, 8]]),
        "accepted_len": np.array([[0, 0, 0], [0, 0, 3], [0, 6, 8]]),
        "latency_s": np.array([[0.1, np.nan, np.nan], [0.1, np.nan, 0.5], [0.1, 0.2, 0.5]]),
    }


def test_summary_numbers():
    s = summarize(_data(), 3)
    assert s["n"] == 3 and s["final_hist"] == [1, 0, 2]
    assert s["stage"]["runs"] == [3, 1, 2]
    assert s["stage"]["acceptance"][1] == 6 / 8             # stage 1 got 8 tokens from stage 0, kept 6
    assert s["stage"]["acceptance"][2] == (3 + 8) / (6 + 8)  # from stage 0 (6 tokens) and stage 1 (8)
    assert np.isclose(s["stage"]["mean_latency_s"][2], 0.5)
    assert s["score_mean"] == 0.5                            # NaN = unscored, left out
    assert s["datasets"]["b"] == {"n": 2, "score": 0.0, "final_hist": [0, 0, 2]}


def test_format_and_plot(tmp_path):
    s = summarize(_data(), 3)
    txt = format_summary(s, ["x", "y", "z"])
    assert "3 samples" in txt and "0.750" in txt
    plot_summary(s, ["x", "y", "z"], str(tmp_path / "p.png"))
    assert (tmp_path / "p.png").stat().st_size > 5_000
