"""Acceptance rules (asd.core.verify): hand cases, and the speculative-sampling theorem by simulation."""
import numpy as np
import pytest

from asd.core.verify import SpeculativeSampler, greedy_accept, sample_index, truncate_at_stop


def test_greedy_accept_hand_cases():
    assert greedy_accept(np.array([5, 7, 9]), np.array([5, 7, 2, 4])) == (2, 2)
    assert greedy_accept(np.array([5, 7, 9]), np.array([5, 7, 9, 4])) == (3, 4)   # bonus token
    assert greedy_accept(np.array([5, 7, 9]), np.array([1, 7, 9, 4])) == (0, 1)
    assert greedy_accept(np.array([], dtype=np.int64), np.array([3])) == (0, 3)


def test_sample_index_never_picks_zero_mass():
    p = np.array([0.0, 0.5, 0.0, 0.5, 0.0])
    draws = {sample_index(p, u) for u in np.linspace(0, 0.999999, 1001)}
    assert draws == {1, 3}
    assert sample_index(p, 0.9999999999) == 3


def test_truncate_at_stop():
    t, e = truncate_at_stop(np.array([4, 2, 5, 2]), (2,), 10)
    assert t.tolist() == [4, 2] and e
    t, e = truncate_at_stop(np.array([4, 5, 6]), (2,), 2)
    assert t.tolist() == [4, 5] and not e


class ResampleFromP(SpeculativeSampler):
    """Broken: after a rejection draw from p instead of the residual max(0, p − q)."""

    def residual(self, p, q):
        return p.astype(np.float64)


class AcceptAlways(SpeculativeSampler):
    def accept_prob(self, p_x, q_x):
        return 1.0


def emitted_token_law(sampler, p, q, n, seed):
    """Histogram of the one token emitted for a 1-token draft x ~ q verified against p ([2, V] with bonus)."""
    rng = np.random.default_rng(seed)
    V = len(p)
    counts = np.zeros(V)
    pp = np.stack([p, p])   # the bonus row: after an accepted x the next token would come from p again
    for _ in range(n):
        x = sample_index(q, rng.random())
        a, nxt = sampler.accept(np.array([x]), q[None], pp, rng)
        counts[x if a == 1 else nxt] += 1
    return counts


@pytest.mark.parametrize("sampler,ok", [(SpeculativeSampler(), True), (ResampleFromP(), False),
                                        (AcceptAlways(), False)])
def test_speculative_sampling_reproduces_target(sampler, ok):
    stats = pytest.importorskip("scipy.stats", reason="scipy is not installed (the chi-square test needs it)")
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(6) * 0.7)
    q = rng.dirichlet(np.ones(6) * 0.7)
    counts = emitted_token_law(sampler, p, q, 20000, seed=1)
    pval = stats.chisquare(counts, p * counts.sum()).pvalue
    assert (pval > 0.01) == ok, pval
