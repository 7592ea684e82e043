"""``StaticSession``: the HFSession protocol on the static-KV-cache decoder of asd/models/cuda_graph.py.

The seam of asd/models/hf_session.py: only ``_forward``, ``truncate``, ``select_rows`` and ``close``
change. The static decoder keeps slot == position per row and lets padding tokens take no slot, so
truncation is a roll-back of each row's length (no holes), and one step may feed a ragged chunk.
On CUDA the decoder replays CUDA graphs; on the CPU it runs the same fused step eagerly, which on
the tiny testbed models cuts the per-step module overhead of transformers' eager path.

Numerics: the fused projections round differently from transformers' modules, so greedy output
equals *this path's* own ``generate`` (what the cascade's losslessness is tested against), and
transformers' ``generate`` up to ties (tests/models/test_cuda_graph.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from asd.models.hf_session import HFSession


class StaticSession(HFSession):
    """A batch of rows on the engine's StaticDecoder (one live session per engine; a second gets its own)."""

    def __init__(self, engine, batch: int, seeds: Sequence[int] | None = None):
        super().__init__(engine, batch, seeds=seeds)
        self.dec = engine.static_decoder(batch, owner=self)
        self.dec.set_lengths([0] * batch)

    @torch.inference_mode()
    def _forward(self, tok: torch.Tensor, new_mask: torch.Tensor) -> torch.Tensor:
        """tok [B, W], new_mask [B, W] (0 = padding: takes no slot) → final-norm hidden [B, W, H]."""
        dec = self.dec
        n_new = new_mask.sum(1).cpu().numpy()
        if dec.use_graphs:
            dec.step(tok, new_mask)
            h = dec.last_hidden
        else:
            # eager (CPU): attend over the slots in use only, rounded up to 64, instead of the whole cache
            B, W = tok.shape
            dec._check_room(B, W)
            win = min(dec._n_slots, -(-(int(self.length.max()) + W) // 64) * 64)
            h = dec._forward(tok, new_mask, window=win)
            dec.lengths[:B] += new_mask.sum(1)
            for b in range(B):
                dec._host_len[b] += int(n_new[b])
            dec.last_hidden = h
        self.length = self.length + n_new
        return h

    def _crop(self, t: int) -> None:  # no holes to crop: truncate rolls lengths back
        pass

    @torch.inference_mode()
    def truncate(self, keep: Sequence[int]) -> None:
        kp = np.asarray(keep, dtype=np.int64)
        assert kp.shape == self.length.shape and (kp <= self.length).all() and (kp >= 0).all()
        self.dec.set_lengths(kp.tolist())
        self.length = kp.copy()

    @torch.inference_mode()
    def select_rows(self, idx: np.ndarray) -> None:
        self.dec.select_rows([int(i) for i in idx])
        ti = torch.as_tensor(idx, device=self.hid_sum.device)
        self.length = self.length[idx]
        self.hid_sum, self.hid_cnt = self.hid_sum[ti], self.hid_cnt[ti]

    def close(self) -> None:
        self.engine.release_decoder(self)
        self.dec = None
