"""Shared fixtures: tiny HuBERT encoders and an offline Hugging Face cache."""

from __future__ import annotations

import pytest
import torch
from helpers import MICRO_HUBERT


@pytest.fixture
def micro_hubert():
    """A HuBERT small enough for every test (group-norm front end, post-LN, like base)."""
    from modalities.speech.hubert.model import HubertEncoder, HubertEncoderConfig

    torch.manual_seed(0)
    return HubertEncoder(HubertEncoderConfig(**MICRO_HUBERT)).eval()


@pytest.fixture
def micro_hubert_stable():
    """The large/xlarge layout: layer-norm front end, pre-LN layers, final LayerNorm."""
    from modalities.speech.hubert.model import HubertEncoder, HubertEncoderConfig

    torch.manual_seed(1)
    config = HubertEncoderConfig(**MICRO_HUBERT, feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True)
    return HubertEncoder(config).eval()


@pytest.fixture(scope="session", autouse=True)
def own_zoo_cache(tmp_path_factory):
    """The zoo's own cache (downloads, conversions, processed datasets) in a folder of this test
    session's: tests wrote into the user's $ZOO_CACHE (or ~/.cache/huggingface/ssl-zoo)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ZOO_CACHE", str(tmp_path_factory.mktemp("zoo-cache")))
        yield


@pytest.fixture
def offline_cache(tmp_path, monkeypatch):
    """An empty HF cache with huggingface_hub in offline mode (as HF_HUB_OFFLINE=1), and an empty
    zoo cache beside it."""
    from huggingface_hub import constants

    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setattr(constants, "HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.delenv("ZOO_CACHE", raising=False)  # the zoo's cache too is the test's own: $HF_HOME/ssl-zoo
    return cache


@pytest.fixture(autouse=True)
def forget_added_model_configs(monkeypatch):
    """hub_configs a test adds with zoo.add_model_config stay within that test."""
    from zoo import registry

    monkeypatch.setattr(registry, "_ADDED_ENTRIES", {})
