"""Tiny MERT encoders (`helpers.MICRO_MERT`): plain, and CQT front end with deepnorm."""

from __future__ import annotations

import pytest
import torch
from helpers import MICRO_MERT, one_thread  # noqa: F401  (one_thread: autouse, one torch thread)


@pytest.fixture
def micro_mert():
    from modalities.audio.mert.model import MertEncoder, MertEncoderConfig

    torch.manual_seed(0)
    return MertEncoder(MertEncoderConfig(**MICRO_MERT)).eval()


@pytest.fixture
def micro_mert_cqt():
    from modalities.audio.mert.model import MertEncoder, MertEncoderConfig

    torch.manual_seed(1)
    config = MertEncoderConfig(**MICRO_MERT, feature_extractor_cqt=True, feature_extractor_cqt_bins=84, deepnorm=True)
    return MertEncoder(config).eval()
