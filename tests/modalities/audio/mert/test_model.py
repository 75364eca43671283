"""MertEncoder through the shared API: variants, frames, layers, saving, Hub loading, bad input."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from helpers import MICRO_MERT, put_in_hf_cache, shared_path

import zoo
from zoo.errors import ConfigError, InputError, OfflineError


def waves(*seconds: float, rate: int = 16000) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return [torch.randn(int(s * rate), generator=generator) * 0.1 for s in seconds]


def test_config_refuses_what_mert_cannot_run():
    from modalities.audio.mert.model import MertEncoderConfig

    with pytest.raises(ConfigError, match="do_stable_layer_norm=False"):
        MertEncoderConfig(**MICRO_MERT, deepnorm=True, do_stable_layer_norm=True)
    with pytest.raises(ConfigError, match="sample_rate=16000"):
        MertEncoderConfig(**{**MICRO_MERT, "sample_rate": 24000}, feature_extractor_cqt=True)


def test_processor_rate_follows_the_config(micro_mert):
    assert micro_mert.processor.sampling_rate == 16000
    from modalities.audio.mert.model import MertEncoder, MertEncoderConfig

    assert MertEncoder(MertEncoderConfig(**{**MICRO_MERT, "sample_rate": 24000})).processor.sampling_rate == 24000


def test_cqt_kernels_stay_out_of_the_checkpoint(micro_mert_cqt, tmp_path):
    state = micro_mert_cqt.state_dict()
    assert not any("cqt" in key for key in state)
    assert state["model.feature_projection.projection.weight"].shape == (32, 16 + 84)
    micro_mert_cqt.save_pretrained(tmp_path / "saved")
    loaded = zoo.load(tmp_path / "saved")
    batch = micro_mert_cqt.preprocess(waves(1.0, 0.7), sampling_rate=16000)
    with torch.no_grad():
        assert torch.equal(loaded(**batch).last_hidden_state, micro_mert_cqt(**batch).last_hidden_state)


def test_deepnorm_scales_init_and_residuals(micro_mert_cqt):
    from modalities.audio.mert.model import MertEncoder, MertEncoderConfig

    assert micro_mert_cqt.residual_alpha == pytest.approx(4 ** 0.25)
    torch.manual_seed(1)
    plain = MertEncoder(MertEncoderConfig(**MICRO_MERT, feature_extractor_cqt=True, feature_extractor_cqt_bins=84))
    beta = 16 ** 0.25
    for name in ("attention.v_proj.weight", "attention.out_proj.weight", "feed_forward.output_dense.weight"):
        scaled = dict(micro_mert_cqt.model.encoder.layers.named_parameters())[f"0.{name}"]
        assert torch.allclose(scaled * beta, dict(plain.model.encoder.layers.named_parameters())[f"0.{name}"])
    assert torch.equal(micro_mert_cqt.model.encoder.layers[0].attention.q_proj.weight,
                       plain.model.encoder.layers[0].attention.q_proj.weight)


def test_batched_rows_equal_items_alone(micro_mert_cqt):
    items = waves(1.3, 0.4, 0.9)
    batched = micro_mert_cqt.embed(items, pool="none", batch_size=3, sampling_rate=16000, progress=False)
    alone = [micro_mert_cqt.embed([item], pool="none", sampling_rate=16000, progress=False)[0] for item in items]
    for row, single in zip(batched, alone):
        assert (row - single).abs().max() < 1e-5


def test_all_layers_and_frames_at_50_hz(micro_mert):
    layers = micro_mert.embed(waves(1.0, 2.0), layer="all", sampling_rate=16000, progress=False)
    assert layers.shape == (2, 3, 32)
    (times, frames), = micro_mert.embed_frames(waves(1.0), sampling_rate=16000, progress=False)
    assert frames.shape == (49, 32) and len(times) == 49
    assert torch.equal(times[:3], torch.tensor([200, 520, 840], dtype=torch.float64) / 16000)
    (_, stack), = micro_mert.embed_frames(waves(1.0), layer=[0, -1], sampling_rate=16000, progress=False)
    assert stack.shape == (2, 49, 32)


def test_every_frame_comes_out_across_windows(micro_mert):
    """2.5 s in 1 s windows gave 123 of its 124 frames, one lost at each window edge. Windows now
    start on frame boundaries (42, 41 and 41 frames): every frame once, at the whole recording's
    times, the first window's as it gives them alone (within 1e-5)."""
    micro_mert.processor.chunk_seconds = 1.0
    wave = waves(2.5)[0]
    (times, frames), = micro_mert.embed_frames([wave], sampling_rate=16000, progress=False)
    assert len(frames) == 124
    assert torch.equal(times, (torch.arange(124, dtype=torch.float64) * 320 + 200) / 16000)
    (_, first), = micro_mert.embed_frames([wave[: 41 * 320 + 400]], sampling_rate=16000, progress=False)
    assert (frames[:42] - first).abs().max() < 1e-5


def test_other_rates_are_resampled(micro_mert):
    import torchaudio.functional

    wave = waves(1.0, rate=44100)[0]
    direct = micro_mert.embed([wave], sampling_rate=44100, progress=False)
    resampled = micro_mert.embed([torchaudio.functional.resample(wave, 44100, 16000)], sampling_rate=16000,
                                 progress=False)
    assert torch.allclose(direct, resampled, atol=1e-6)


def test_bf16_weights_run(micro_mert_cqt):
    encoder = micro_mert_cqt.to(torch.bfloat16)
    rows = encoder.embed(waves(0.8), sampling_rate=16000, progress=False)
    assert rows.dtype == torch.float32 and torch.isfinite(rows).all()


@pytest.mark.parametrize("bad, message", [(torch.zeros(0), "empty"), (torch.full((800,), float("nan")), "NaN")])
def test_bad_audio_is_refused(micro_mert, bad, message):
    with pytest.raises(InputError, match=message):
        micro_mert.embed([bad], sampling_rate=16000, progress=False)


def hub_snapshot(tmp_path, do_normalize: bool):
    """The golden v1-like folder as a MERT Hub repo, with a Wav2Vec2FeatureExtractor config."""
    repo = tmp_path / "repo"
    shutil.copytree(shared_path("golden", "mert", "v1_like"), repo)
    (repo / "outputs.safetensors").unlink()
    (repo / "preprocessor_config.json").write_text(json.dumps({
        "do_normalize": do_normalize, "feature_extractor_type": "Wav2Vec2FeatureExtractor", "feature_size": 1,
        "padding_side": "right", "padding_value": 0, "return_attention_mask": True, "sampling_rate": 24000,
    }))
    return repo


def test_zoo_name_loads_from_the_hf_cache_offline(tmp_path, offline_cache):
    from safetensors.torch import load_file

    put_in_hf_cache(offline_cache, "m-a-p/MERT-v1-95M", hub_snapshot(tmp_path, do_normalize=True), commit="c" * 40)
    encoder = zoo.load("mert-v1-95m", cache_dir=offline_cache)
    assert type(encoder).__name__ == "MertEncoder" and encoder.processor.do_normalize
    assert encoder.processor.sampling_rate == 24000
    golden = shared_path("golden", "mert")
    inputs = load_file(str(golden / "inputs.safetensors"))
    expected = load_file(str(golden / "v1_like" / "outputs.safetensors"))["alone.1.last_hidden_state"]
    with torch.no_grad():
        output = encoder(inputs["input_values"][1:2])
    assert (output.last_hidden_state - expected).abs().max() < 2e-5


def test_a_repo_id_without_its_cached_processor_config_warns_of_the_rate_it_runs_at(tmp_path, offline_cache, caplog):
    """The warning said "(no do_normalize, 16 kHz audio)" while the processor ran at the 24 kHz of
    the config's sample_rate: it names the settings used."""
    repo = hub_snapshot(tmp_path, do_normalize=True)
    (repo / "preprocessor_config.json").unlink()
    put_in_hf_cache(offline_cache, "test-org/mert-v1", repo, commit="d" * 40)
    encoder = zoo.load("test-org/mert-v1", cache_dir=offline_cache)
    assert encoder.processor.sampling_rate == 24000 and not encoder.processor.do_normalize
    assert "(sampling_rate=24000, do_normalize=False, " in caplog.text and "16 kHz" not in caplog.text


def test_offline_without_cache_names_the_repo(offline_cache):
    with pytest.raises(OfflineError, match="m-a-p/MERT-v1-330M"):
        zoo.load("mert-v1-330m", cache_dir=offline_cache)


def test_convert_command_reads_a_repo_folder(tmp_path):
    from zoo.cli import main

    repo = hub_snapshot(tmp_path, do_normalize=False)
    assert main(["convert", "mert", str(repo / "pytorch_model.bin"), str(tmp_path / "out")]) == 0
    converted = zoo.load(tmp_path / "out")
    assert json.loads((tmp_path / "out" / "config.json").read_text())["family"] == "mert"
    assert converted.processor.sampling_rate == 24000 and not converted.processor.do_normalize


def test_unknown_keys_are_listed(tmp_path):
    from zoo.errors import CheckpointError

    repo = hub_snapshot(tmp_path, do_normalize=False)
    state = torch.load(repo / "pytorch_model.bin", weights_only=True)
    state["encoder_cqt_model.fc.weight"] = torch.zeros(3, 3)
    torch.save(state, repo / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="encoder_cqt_model.fc.weight"):
        zoo.load(repo)
