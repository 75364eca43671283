"""The zoo's T-JEPA against the official code (jose-melo/t-jepa) on the same weights.

tests/fixtures/tjepa_official/tiny.pt was written by make.py beside it, with the official
modules; see its docstring. Two variants: 1 regularization token with the feature-type
embedding, and 2 regularization tokens without it.
"""

from pathlib import Path

import pytest
import torch

from modalities.tabular.tjepa import TJEPAConfig, TJEPAEncoder
from modalities.tabular.tjepa.convert import encoder_state_from_official, predictor_state_from_official
from modalities.tabular.tjepa.objective import gather_tokens
from modalities.tabular.tjepa.predictor import TJEPAPredictor
from zoo.errors import CheckpointError

FIXTURE = Path(__file__).resolve().parents[3] / "fixtures" / "tjepa_official" / "tiny.pt"
VARIANTS = {"reg1_feature_types": (1, True), "reg2": (2, False)}
#: measured max abs diff: 0.0 for tokens, context tokens and predictions (torch 2.14.1, CPU);
#: the bound leaves room for another torch's kernels (outputs are LayerNorm-scaled, ~1)
TOLERANCE = 1e-6


@pytest.fixture(scope="module")
def fixture():
    return torch.load(FIXTURE, weights_only=True)


def zoo_encoder(official: dict, n_reg: int, feature_types: bool) -> TJEPAEncoder:
    """The official code types its tokens in column order (numeric, categorical, numeric,
    categorical) while the tokens are numeric-first; `feature_types` says so explicitly."""
    config = TJEPAConfig(num_numeric=2, cardinalities=(4, 3), hidden_dim=16, num_layers=2, num_heads=2,
                         dim_feedforward=32, num_reg_tokens=n_reg, feature_type_embedding=feature_types,
                         feature_types=(0, 1, 0, 1))
    encoder = TJEPAEncoder(config)
    encoder.load_state_dict(encoder_state_from_official(official["encoder"]))
    return encoder.eval()


def inputs(rows: torch.Tensor) -> dict[str, torch.Tensor]:
    """The official table's columns are [numeric, categorical, numeric, categorical]."""
    return {"numeric": rows[:, [0, 2]], "categorical": rows[:, [1, 3]].long()}


@pytest.mark.parametrize("variant", VARIANTS)
def test_encoder_tokens_equal_the_official_encoder(fixture, variant):
    official = fixture[variant]
    encoder = zoo_encoder(official, *VARIANTS[variant])
    tokens = encoder(**inputs(fixture["rows"])).last_hidden_state
    assert tokens.shape == official["tokens"].shape
    assert (tokens - official["tokens"]).abs().max() < TOLERANCE


@pytest.mark.parametrize("variant", VARIANTS)
def test_context_encoding_and_predictor_equal_the_official_ones(fixture, variant):
    """With the official mask semantics (feature indices read as token positions)."""
    official = fixture[variant]
    encoder = zoo_encoder(official, *VARIANTS[variant])
    context, targets = fixture["context"], fixture["targets"]
    with torch.no_grad():
        tokens = gather_tokens(encoder.embed_tokens(**inputs(fixture["rows"])), context)
        encoded = encoder.transformer(tokens)[-1]
    assert (encoded - official["context_tokens"]).abs().max() < TOLERANCE
    predictor = TJEPAPredictor(num_tokens=encoder.config.num_tokens, encoder_width=16, width=8, depth=2, heads=2,
                               feedforward=16, dropout=0.0).eval()
    predictor.load_state_dict(predictor_state_from_official(official["predictor"]))
    with torch.no_grad():
        predicted = predictor(encoded, context, targets)
    assert (predicted - official["predicted"]).abs().max() < TOLERANCE


def test_unknown_official_keys_are_refused(fixture):
    state = dict(fixture["reg2"]["encoder"], **{"head.weight": torch.zeros(1)})
    with pytest.raises(CheckpointError, match="'head.weight' has no zoo counterpart"):
        encoder_state_from_official(state)
