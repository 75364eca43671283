"""A head's training batches hold a random window of each recording longer than the processor's
`chunk_seconds`, the length `embed` (and so `predict`) sees at once; they held whole recordings,
whose memory grew with their length (four 120 s clips: 2.8 GB for a step of hubert-tiny-fsdd,
four 30 s ones 1.3 GB)."""

from __future__ import annotations

import numpy as np
import torch
from helpers import write_tones

import zoo
from zoo.audio import AudioProcessor


def test_a_long_recording_gives_a_random_window_a_short_one_itself():
    processor = AudioProcessor(chunk_seconds=0.1)  # 1,600 samples
    wave, short = torch.arange(5000.0), torch.arange(1000.0)
    torch.manual_seed(0)
    windows = [processor.random_window(wave) for _ in range(20)]
    starts = {int(window[0]) for window in windows}
    assert all(torch.equal(window, wave[int(window[0]) : int(window[0]) + 1600]) for window in windows)
    assert len(starts) > 10 and min(starts) >= 0 and max(starts) <= 3400
    torch.manual_seed(0)
    assert torch.equal(processor.random_window(wave), windows[0])  # torch's generator: a resumed run draws alike
    assert processor.random_window(short) is short


def test_training_collate_windows_long_recordings_and_collate_keeps_them_whole(micro_hubert):
    micro_hubert.processor.chunk_seconds = 0.1
    classifier = zoo.for_classification(micro_hubert, labels=["a", "b"])
    rng = np.random.default_rng(0)
    examples = [{"input": (0.1 * rng.standard_normal(samples)).astype(np.float32), "label": "a"}
                for samples in (1000, 5000)]
    trained = classifier.training_collate(examples, sampling_rate=16000)
    assert trained["input_values"].shape == (2, 1600) and trained["attention_mask"].sum(-1).tolist() == [1000, 1600]
    assert classifier.collate(examples, sampling_rate=16000)["input_values"].shape == (2, 5000)
    frames = zoo.for_token_classification(micro_hubert, labels=["a", "b"])  # labels name every frame: kept whole
    token_examples = [{"input": example["input"], "label": [0] * 3} for example in examples]
    assert frames.training_collate(token_examples, sampling_rate=16000)["input_values"].shape == (2, 5000)


def test_zoo_finetune_trains_on_windows_of_long_recordings(tmp_path, micro_hubert, monkeypatch, capsys):
    """The tones are 3,000-6,000 samples; the saved encoder's windows are 2,000 (0.125 s)."""
    from modalities.speech.hubert.model import HubertEncoder
    from zoo.cli import main

    micro_hubert.processor.chunk_seconds = 0.125
    micro_hubert.save_pretrained(tmp_path / "encoder")
    write_tones(tmp_path / "tones")
    widths, forward = [], HubertEncoder.forward

    def recorded(self, input_values, *args, **kwargs):
        if torch.is_grad_enabled():  # training steps, not embed's scoring
            widths.append(input_values.shape[1])
        return forward(self, input_values, *args, **kwargs)

    monkeypatch.setattr(HubertEncoder, "forward", recorded)
    assert main(["finetune", str(tmp_path / "encoder"), "--data", str(tmp_path / "tones"), "-o", str(tmp_path / "run"),
                 "--label-regex", r"^(\w+)_", "--test-regex", r"_[0-3]\.wav$", "--batch-size", "4", "--epochs", "1",
                 "--no-progress"]) == 0, capsys.readouterr().err
    assert len(widths) == 4 and set(widths) == {2000}  # were the longest of each batch's 3,000-6,000


def test_a_run_on_windows_resumes_exactly(tmp_path, micro_hubert):
    """The windows come from torch's generator, which the checkpoint keeps: a run stopped after
    every step draws the windows, and so the losses, of a run that was never stopped."""
    import json

    from zoo.cli import main

    micro_hubert.processor.chunk_seconds = 0.125
    micro_hubert.save_pretrained(tmp_path / "encoder")
    write_tones(tmp_path / "tones")
    command = ["finetune", str(tmp_path / "encoder"), "--data", str(tmp_path / "tones"), "--label-regex", r"^(\w+)_",
               "--test-regex", r"_[0-3]\.wav$", "--batch-size", "4", "--epochs", "2", "--no-progress"]
    assert main([*command, "-o", str(tmp_path / "whole")]) == 0
    for _ in range(8):  # a time limit of 0 stops each call after one step, checkpointed
        assert main([*command, "-o", str(tmp_path / "steps"), "--time-limit", "0"]) == 0
    whole, steps = ([json.loads(line)["loss"] for line in (tmp_path / run / "log.jsonl").read_text().splitlines()]
                    for run in ("whole", "steps"))
    assert len(whole) == len(steps) == 8 and max(abs(a - b) for a, b in zip(whole, steps)) == 0.0
