"""MERT pretraining (Li et al. 2023, https://arxiv.org/abs/2306.00107): masked prediction
of an acoustic teacher's codes plus reconstruction of a musical teacher's CQT.

Per crop of music the encoder sees the waveform, with 50 % of the crops mixed with 1-3
segments of other crops of the batch (in-batch noise), and spans of frames replaced by
the mask embedding (mask prob 0.8, span 5). On the masked frames it predicts:

- the acoustic teacher's codes, one cross-entropy per codebook over cosine logits, as
  HuBERT does for its one label set (`final_proj` untied: one slice per codebook);
- the musical teacher's CQT (336 bins, 48 per octave from 32.7 Hz) through one linear
  layer, by mean squared error, computed on the clean crop (before noise mixing). MERT
  regresses the magnitudes; `cqt_target="log"` regresses log magnitudes standardised
  per bin over the pretraining set instead, so that quiet bins and quiet notes weigh as
  much as the loud ones (raw magnitudes are mostly near 0, and a small model learns only
  their mean).

loss = sum over codebooks of CE + 10 * mean(conv features^2) + 1 * CQT MSE, the
weights of MERT's `loss_weights [10, 1]` (feature penalty, CQT).

Acoustic teachers:

- `encodec`: the codes of transformers' `EncodecModel` (MERT-v1: the 24 kHz model at
  6 kbps, 8 codebooks of 1024 at 75 Hz). It needs EnCodec's weights (a Hub repo id in
  the HF cache, or a local folder);
- `kmeans`: a residual k-means over log-mel + chroma frames, trained here on the
  pretraining set itself, as MERT-v0 used k-means over hand-made features. Each
  codebook quantises what the codebooks before it left (a residual vector quantiser).
  Every feature is standardised; `chroma_weight` scales the 12 chroma features in the
  distance, where the 64 log-mel features otherwise outweigh them (sqrt(64 / 12) = 2.31
  gives the two groups equal shares). The features (82 MB an hour of audio in float32) are
  written to OUTPUT/features.npy as each recording's are computed and read back a recording
  at a time while k-means runs; each round draws its frames from residuals computed from them
  when read (`StageResiduals`), so neither the features nor their residuals are held whole.
  Each codebook is kept in OUTPUT/.kmeans.pt as it is fitted, and a stopped run, or
  `--time-limit`, goes on with the next one (`kmeans_codes`).

Frame alignment: encoder frame t sees samples [hop t, hop t + field) (320 / 400 at
24 kHz: 75 Hz frames). Log-mel frames use that window; the CQT and chroma, whose
frames are centred (nnAudio's center=True), are computed on the waveform shifted by
field / 2, so their frame t is centred where encoder frame t is. MERT's own code computes the
CQT target of each crop, unshifted and zero-padded at the crop's edges: on the bundled clips the
two differ by up to 25 % (relative L2 of a band), from the shift and the edges alike. Teacher targets are
computed once per recording: the codes, in the smallest integer type their codebooks fit,
are stored in OUTPUT/labels.pt and held; the CQT (181 MB an hour of audio in fp16) is
written to OUTPUT/cqt.npy as each recording's is computed, recorded in labels.pt, and read
a crop at a time, so that memory does not grow with it. EnCodec's codes pass through
OUTPUT/codes.npy, as the k-means teacher's features do, until labels.pt holds them. A run
stopped in the teachers' pass leaves its files partial, and its rerun goes on from the first
recording either lacks; `--time-limit` stops the pass too (`teachers_pass`). Crops start on
frame boundaries, so cropping the targets is slicing them.

Shapes: B items, S samples, T frames, D width, C codebooks, K codes per codebook, P
final_dim, Q CQT bins, M masked frames, F teacher features.
"""

from __future__ import annotations

import argparse
import dataclasses
import pickle
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from modalities.audio.mert.model import CQT_OCTAVES, VARIANTS, MertEncoder, MertEncoderConfig, constant_q
from modalities.audio.mert_pretrain_options import CQT_TARGETS
from modalities.speech.hubert.pretrain import (
    LABELS_FILE, SPENT, Clusters, cached_labels, check_loss_settings, check_mask_settings, compute_span_mask,
    encode_masked, encoder_config, equalise_mask_counts, fit_clusters, run_recordings,
)
from zoo.audio_crops import (
    CropBatches, RecordingFiles, frame_count, frame_counts, frame_slice, recording_frames,
)
from zoo.errors import CheckpointError, ConfigError, InputError
from zoo.frame_rows import FrameRows, RowGroups, delete_pass_file, past, resumable_pass
from zoo.io import atomic_torch_save
from zoo.outputs import PretrainOutput
from zoo.progress import progress_bar
from zoo.saving import weights_fingerprint
from zoo.run_folders import command_settings
from zoo.training import TimeLimitReached, encoder_to_pretrain, say, train_and_save, train_config_from_args

ENCODER_FOLDER = "encoder"
#: MERT's CQT teacher: 7 octaves of 48 bins from 32.7 Hz
CQT_BINS = 336
MEL_BINS = 64
CHROMA_BINS_PER_OCTAVE = 12
#: EnCodec's bandwidth for MERT-v1's 8 codebooks
ENCODEC_BANDWIDTH = 6.0
#: floor of the CQT magnitudes before the log of `cqt_target="log"` (-80 dB of a unit magnitude)
CQT_FLOOR = 1e-4
#: the run folder's CQT targets (`FrameRows`), beside labels.pt, which records them
CQT_FILE = "cqt.npy"
#: the k-means teacher's features (`FrameRows`, beside CQT_FILE) while it is fitted; deleted once the codes are made
FEATURES_FILE = "features.npy"
#: EnCodec's codes (`FrameRows`, beside CQT_FILE) while its pass runs; deleted once labels.pt holds them
CODES_FILE = "codes.npy"
#: the residual k-means codebooks fitted so far (beside CQT_FILE), for a stopped run to go on with the next
KMEANS_FILE = ".kmeans.pt"
ACOUSTIC_FEATURES = MEL_BINS + CHROMA_BINS_PER_OCTAVE
#: CQT frames `cqt_bin_statistics` reads at a time (a long recording is not read whole)
STATISTICS_ROWS = 16384


# ---------------------------------------------------------------------------------------
# Teachers: one (T, C) code sequence and one (T, Q) CQT per recording


def centred_cqt(cqt: nn.Module, wave: torch.Tensor, field: int, frames: int) -> torch.Tensor:
    """(S,) waveform -> (frames, Q) CQT magnitudes, frame t centred on encoder frame t."""
    with torch.no_grad():
        spectrum = cqt(wave[field // 2 :][None].float())[0].T
    if len(spectrum) < frames:
        raise InputError(f"the CQT gave {len(spectrum)} frames for {frames} encoder frames; check the framing")
    return spectrum[:frames]


def acoustic_features(wave: torch.Tensor, rate: int, field: int, hop: int, chroma_cqt: nn.Module) -> torch.Tensor:
    """(S,) waveform -> (T, 64 + 12) log-mel (Kaldi fbank, the encoder's window) + chroma.

    Chroma folds an 84-bin CQT (12 per octave) onto the 12 pitch classes and scales
    each frame to a maximum of 1, so it says which notes sound, not how loud.
    """
    import torchaudio.compliance.kaldi as kaldi

    frames = frame_count(wave.numel(), field, hop)
    padded = F.pad(wave, (0, max(field - wave.numel(), 0)))
    log_mel = kaldi.fbank(padded[None].float(), sample_frequency=rate, frame_length=1000.0 * field / rate,
                          frame_shift=1000.0 * hop / rate, num_mel_bins=MEL_BINS, dither=0.0,
                          snip_edges=True)[:frames]
    cqt = centred_cqt(chroma_cqt, padded, field, frames)
    chroma = cqt.view(frames, -1, CHROMA_BINS_PER_OCTAVE).sum(1)
    chroma = chroma / chroma.amax(dim=1, keepdim=True).clamp(min=1e-6)
    return torch.cat([log_mel, chroma], dim=1)


def teacher_features(waves: Sequence[torch.Tensor], rate: int, field: int, hop: int) -> list[torch.Tensor]:
    """`acoustic_features` of every recording, all through one chroma CQT."""
    chroma_cqt = constant_q(rate, hop, CQT_OCTAVES * CHROMA_BINS_PER_OCTAVE)
    with torch.no_grad():
        return [acoustic_features(wave, rate, field, hop, chroma_cqt) for wave in waves]


@dataclasses.dataclass
class ResidualKMeans:
    """A residual vector quantiser fitted by k-means: codebook c quantises the residual
    that codebooks 0..c-1 leave."""

    stages: list[Clusters]

    def codes(self, features: torch.Tensor) -> torch.Tensor:
        """(T, F) features -> (T, C) codes."""
        return torch.stack(self.quantise(features)[0], dim=1)

    def residual(self, features: torch.Tensor) -> torch.Tensor:
        """(T, F) features -> the (T, F) residual every stage leaves (the features, as float, with no stage)."""
        return self.quantise(features)[1]

    def quantise(self, features: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """(T, F) features -> each stage's (T,) codes and the residual the last stage leaves."""
        residual, columns = features.float(), []
        for stage in self.stages:
            ids = stage.assign(residual)
            columns.append(ids)
            residual = residual - stage.centroids(ids)
        return columns, residual


class StageResiduals(Sequence[torch.Tensor]):
    """Each recording's (T_i, F) residual after `quantiser`'s stages, computed from its features
    when asked for and not kept: a round of `fit_residual_kmeans` reads only the frames it
    draws, where a list of every recording's residuals held one more copy of the corpus's
    features (82 MB an hour). Computed as `ResidualKMeans.codes` does on the whole recording,
    so the residuals are those a held copy had, bit for bit."""

    def __init__(self, features: Sequence[torch.Tensor], quantiser: ResidualKMeans) -> None:
        self.features, self.quantiser = features, quantiser
        self.frames = frame_counts(features)  # what `drawn_frames` counts, without computing a residual

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.quantiser.residual(self.features[index])


def fit_residual_kmeans(features: Sequence[torch.Tensor], codebooks: int, clusters: int, max_frames: int,
                        seed: int, weights: torch.Tensor | None = None, done: Sequence[Clusters] = (),
                        keep: Optional[Callable[[list[Clusters]], None]] = None,
                        deadline: Optional[float] = None) -> ResidualKMeans:
    """`codebooks` rounds of k-means, each on the residual of the rounds before (`StageResiduals`:
    `features` may be `FrameRows`, read a recording at a time).

    `weights` (F,) scales each standardised feature in the distance (`fit_clusters`). The rounds
    go on after those `done` by a stopped run; each new one is handed to `keep` with those before
    it, and past the `deadline` (`time.monotonic()`) the fit stops after the round under way:
    `TimeLimitReached`. A round is seeded by its number, so the rounds come out as one fit's.
    """
    stages = list(done)
    for round_ in range(len(stages), codebooks):
        residuals = StageResiduals(features, ResidualKMeans(list(stages)))
        stages.append(fit_clusters(residuals, clusters, max_frames, seed + round_, weights,
                                   standardise=True, inits=3))
        if keep is not None:
            keep(stages)
        if round_ + 1 < codebooks and past(deadline):
            raise TimeLimitReached(f"{round_ + 1} of {codebooks} k-means codebooks fitted")
    return ResidualKMeans(stages)


def feature_weights(chroma_weight: float) -> torch.Tensor:
    """(64 + 12,) k-means weights of `acoustic_features`: 1 per log-mel bin, `chroma_weight` per pitch class."""
    if not chroma_weight > 0:
        raise ConfigError(f"--chroma-weight={chroma_weight} must be > 0 (1 = every feature counts the same)")
    return torch.cat([torch.ones(MEL_BINS), torch.full((CHROMA_BINS_PER_OCTAVE,), float(chroma_weight))])


def log_cqt(cqt: torch.Tensor) -> torch.Tensor:
    """CQT magnitudes -> their log, floored at `CQT_FLOOR`."""
    return cqt.float().clamp(min=CQT_FLOOR).log()


def cqt_bin_statistics(cqts: Sequence[torch.Tensor], rows: int = STATISTICS_ROWS) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard deviation of each bin of the log CQT over all frames, (Q,) each
    (`cqt_bin_moments` in float32, the deviation at least 1e-6)."""
    mean, std = cqt_bin_moments(cqts, rows)
    return mean.float(), std.clamp(min=1e-6).float()


def cqt_bin_moments(cqts: Sequence[torch.Tensor], rows: int = STATISTICS_ROWS) -> tuple[torch.Tensor, torch.Tensor]:
    """Float64 mean and (unbiased) standard deviation of each bin of the log CQT over all frames.

    Read `rows` frames at a time (`cqt_row_blocks`), so that a corpus's log CQT is never held
    (in float64: 725 MB an hour of audio): each block's mean and sum of squared deviations are
    merged into the running ones (Chan et al.'s pairwise update), which agrees with the mean and
    std of all frames at once to about 1e-15 relative.
    """
    count, mean, squares = 0, None, None
    for block in cqt_row_blocks(cqts, rows):
        values = log_cqt(block).double()
        block_mean = values.mean(0)
        block_squares = (values - block_mean).pow(2).sum(0)
        if mean is None:
            count, mean, squares = len(values), block_mean, block_squares
            continue
        total = count + len(values)
        delta = block_mean - mean
        mean = mean + delta * (len(values) / total)
        squares = squares + block_squares + delta.pow(2) * (count * len(values) / total)
        count = total
    if mean is None:
        raise InputError("no CQT frames to take statistics of; pass at least one recording")
    return mean, (squares / (count - 1)).sqrt()


def cqt_row_blocks(cqts: Sequence[torch.Tensor], rows: int = STATISTICS_ROWS) -> Iterator[torch.Tensor]:
    """The frames of every recording in blocks of at most `rows` (`FrameRows` reads only those)."""
    for index, frames in enumerate(frame_counts(cqts).tolist()):
        for first in range(0, frames, rows):
            yield frame_slice(cqts, index, first, min(rows, frames - first))


def code_dtype(codebook_sizes: Sequence[int]) -> torch.dtype:
    """The smallest integer type that holds every code (uint8 for up to 256 per codebook, int16 for
    EnCodec's 1024): a corpus's codes held as int64 took 17 MB an hour. The loss takes them as
    long a batch at a time."""
    largest = max(codebook_sizes) - 1
    return next(dtype for dtype in (torch.uint8, torch.int16, torch.int32, torch.int64)
                if largest <= torch.iinfo(dtype).max)


def load_encodec(name_or_path: str, device: str = "cpu"):
    """transformers' EncodecModel from a local folder or a Hub repo id (through the HF cache), on
    the run's `device`, where it codes the whole corpus before training."""
    from transformers import EncodecModel

    from zoo.hub import model_to

    try:
        return model_to(EncodecModel.from_pretrained(name_or_path).eval(), device, None)
    except OSError as err:
        raise InputError(
            f"--encodec {name_or_path!r}: cannot load EnCodec's weights ({err}); pass a local folder or a repo id "
            "in the Hugging Face cache (facebook/encodec_24khz), or use --teacher kmeans"
        ) from err


def encodec_codes(model, wave: torch.Tensor, frames: int, bandwidth: float = ENCODEC_BANDWIDTH) -> torch.Tensor:
    """(S,) waveform at EnCodec's rate -> (frames, C) codes (EnCodec frame t starts at sample hop t)."""
    with torch.no_grad():
        encoded = model.encode(wave[None, None].float().to(model.device), bandwidth=bandwidth)
    codes = encoded.audio_codes.cpu().reshape(-1, encoded.audio_codes.shape[-1]).T  # one chunk: (T', C)
    if len(codes) < frames:
        raise InputError(f"EnCodec gave {len(codes)} frames for {frames} encoder frames; its hop must be the encoder's")
    return codes[:frames].long()


# ---------------------------------------------------------------------------------------
# In-batch noise


def mix_in_batch_noise(waves: torch.Tensor, mixture_prob: float, length_range: tuple[int, int],
                       count_range: tuple[int, int], volume: float = 1.0) -> torch.Tensor:
    """Add to a `mixture_prob` share of the crops 1-3 segments cut from the other crops.

    Each segment's length is drawn from `length_range` samples (capped at the crop
    length), its source position anywhere in the other crops laid end to end, and its
    target position anywhere in the crop. (MERT's code mixes when rand > mixture_prob,
    so its 0.5 is also a 50 % share.) Draws use torch's global RNG, which the training
    loop checkpoints.
    """
    mixed = waves.clone()
    batch, samples = waves.shape
    if batch < 2:
        return mixed
    for row in range(batch):
        if float(torch.rand(())) >= mixture_prob:
            continue
        pool = torch.cat([waves[:row], waves[row + 1 :]]).flatten()
        for _ in range(int(torch.randint(count_range[0], count_range[1] + 1, ()))):
            high = min(length_range[1], samples)
            length = int(torch.randint(min(length_range[0], high), high + 1, ()))
            source = int(torch.randint(0, pool.numel() - length + 1, ()))
            target = int(torch.randint(0, samples - length + 1, ()))
            mixed[row, target : target + length] += volume * pool[source : source + length]
    return mixed


# ---------------------------------------------------------------------------------------
# The objective


class MertPretraining(nn.Module):
    """MERT's objective around a `MertEncoder` (see the module docstring).

    Args:
        encoder: the encoder to pretrain.
        codebook_sizes: K of each of the C codebooks of the acoustic teacher.
        cqt_bins: Q of the CQT targets; 0 drops the CQT loss.
        final_dim: P per codebook (MERT-95M: 64).
        mask_prob / mask_length / min_masks: span masking as HuBERT's, counts evened out across
            the batch (`equalise_mask_counts`) (MERT-v1: 0.8 / 5 / 2).
        logit_temp: temperature of the cosine logits (0.1).
        feature_penalty / cqt_weight: MERT's loss_weights (10 / 1).
        feature_grad_mult: scale of the gradient that reaches the conv front end
            (MERT-95M and HuBERT-base: 0.1), the penalty's included.
        cqt_target: "magnitude" (MERT) or "log": log magnitudes standardised per bin by
            `fit_cqt_scale`.
        mixture_prob: share of crops mixed with in-batch noise (0.5); 0 turns it off.
        noise_length: segment length range in samples (MERT-95M: 12000-24000 at 24 kHz).
        noise_count: segments per mixed crop (1-3).
    """

    def __init__(self, encoder: MertEncoder, codebook_sizes: Sequence[int], cqt_bins: int = CQT_BINS,
                 final_dim: int = 64, mask_prob: float = 0.8, mask_length: int = 5, logit_temp: float = 0.1,
                 feature_penalty: float = 10.0, cqt_weight: float = 1.0, mixture_prob: float = 0.5,
                 noise_length: tuple[int, int] = (12000, 24000), noise_count: tuple[int, int] = (1, 3),
                 feature_grad_mult: float = 0.1, cqt_target: str = "magnitude", min_masks: int = 2) -> None:
        super().__init__()
        if not codebook_sizes or min(codebook_sizes) < 2 or final_dim < 1 or logit_temp <= 0:
            raise ConfigError(f"codebook_sizes={list(codebook_sizes)} must be >= 2 each, final_dim={final_dim} >= 1 "
                              f"and logit_temp={logit_temp} > 0")
        if not 0.0 <= mixture_prob <= 1.0 or min(*noise_length, *noise_count) < 1:
            raise ConfigError(f"mixture_prob={mixture_prob} must lie in [0, 1]; noise_length={noise_length} and "
                              f"noise_count={noise_count} must be positive ranges")
        check_loss_settings(feature_penalty, feature_grad_mult)
        if cqt_target not in CQT_TARGETS:
            raise ConfigError(f"cqt_target={cqt_target!r}: choose one of {CQT_TARGETS}")
        check_mask_settings(mask_prob, mask_length, min_masks)
        self.encoder = encoder
        self.codebook_sizes = list(codebook_sizes)
        self.final_proj = nn.Linear(encoder.embed_dim, final_dim * len(self.codebook_sizes))
        self.label_embeddings = nn.Parameter(torch.rand(sum(self.codebook_sizes), final_dim))
        self.cqt_head = nn.Linear(encoder.embed_dim, cqt_bins) if cqt_bins else None
        self.cqt_target = cqt_target
        self.register_buffer("cqt_mean", torch.zeros(cqt_bins))
        self.register_buffer("cqt_std", torch.ones(cqt_bins))
        self.mask_prob, self.mask_length, self.min_masks = mask_prob, mask_length, min_masks
        self.logit_temp = logit_temp
        self.feature_penalty, self.cqt_weight = feature_penalty, cqt_weight
        self.feature_grad_mult = feature_grad_mult
        self.mixture_prob, self.noise_length, self.noise_count = mixture_prob, tuple(noise_length), tuple(noise_count)

    def fit_cqt_scale(self, cqts: Sequence[torch.Tensor]) -> None:
        """Set the per-bin statistics that standardise the log CQT targets (`cqt_target="log"`)."""
        self.cqt_mean, self.cqt_std = cqt_bin_statistics(cqts)

    def cqt_targets(self, cqt: torch.Tensor) -> torch.Tensor:
        """(M, Q) CQT magnitudes -> the regression targets of `cqt_target`."""
        if self.cqt_target == "magnitude":
            return cqt.float()
        return (log_cqt(cqt) - self.cqt_mean) / self.cqt_std

    def code_losses(self, hidden: torch.Tensor, codes: torch.Tensor) -> tuple[torch.Tensor, list[float]]:
        """(M, D) masked frames, (M, C) codes -> sum of the C cross-entropies and each accuracy."""
        with torch.autocast(device_type=hidden.device.type, enabled=False):
            projections = self.final_proj(hidden.float()).chunk(len(self.codebook_sizes), dim=-1)
            embeddings = self.label_embeddings.float().split(self.codebook_sizes)
            total, accuracies = hidden.new_zeros((), dtype=torch.float32), []
            for book, (projected, embedding) in enumerate(zip(projections, embeddings)):
                logits = F.normalize(projected, dim=-1) @ F.normalize(embedding, dim=-1).T / self.logit_temp
                total = total + F.cross_entropy(logits, codes[:, book])
                accuracies.append((logits.argmax(-1) == codes[:, book]).float().mean().item())
        return total, accuracies

    def forward(self, batch: dict[str, torch.Tensor]) -> PretrainOutput:
        """Loss of one batch of equal-length crops (from `CropBatches`).

        Shapes:
            input_values (B, S), attention_mask (B, S), labels (B, T, C) codes (any integer type), cqt (B, T, Q).
        """
        input_values, attention_mask, codes = batch["input_values"], batch["attention_mask"], batch["labels"]
        sample_lengths = attention_mask.sum(-1)
        if self.training and self.mixture_prob > 0:
            input_values = mix_in_batch_noise(input_values, self.mixture_prob, self.noise_length, self.noise_count)
        frame_lengths = self.encoder.frame_lengths(sample_lengths)
        if codes.shape[1] != int(frame_lengths.max()):
            raise InputError(f"targets have {codes.shape[1]} frames but the audio gives {int(frame_lengths.max())}")
        mask = equalise_mask_counts(compute_span_mask(frame_lengths.cpu(), codes.shape[1], self.mask_prob,
                                                      self.mask_length, self.min_masks)).to(codes.device)
        features, output = encode_masked(self.encoder, input_values, sample_lengths, mask, self.feature_grad_mult)
        hidden = output.last_hidden_state[mask]
        code_loss, accuracies = self.code_losses(hidden, codes[mask].long())
        penalty = features.float().pow(2).mean()
        loss = code_loss + self.feature_penalty * penalty
        logs = {"code_loss": code_loss.item(), "accuracy": sum(accuracies) / len(accuracies),
                "feature_penalty": penalty.item(), "masked_fraction": (mask.sum() / frame_lengths.sum()).item()}
        if self.cqt_head is not None:
            cqt_loss = F.mse_loss(self.cqt_head(hidden).float(), self.cqt_targets(batch["cqt"][mask]))
            loss = loss + self.cqt_weight * cqt_loss
            logs["cqt_mse"] = cqt_loss.item()
        return PretrainOutput(loss=loss, logs=logs)


# ---------------------------------------------------------------------------------------
# Command line: zoo pretrain mert ...


log = partial(say, "mert pretrain")


def make_targets(args: argparse.Namespace, encoder: MertEncoder, waves: Sequence[torch.Tensor],
                 cqt_file: Path, deadline: Optional[float] = None) -> dict[str, Any]:
    """Both teachers' targets for every recording: codes (T, C) in `code_dtype` and, unless --no-cqt,
    CQT (T, Q) in fp16, written to `cqt_file` as they are computed and read from it (`FrameRows`).
    EnCodec's codes, or the k-means teacher's features, pass through a file beside it too
    (`pass_outputs`); past the `deadline` (`time.monotonic()`) the pass stops (`teachers_pass`)."""
    rate = encoder.processor.sampling_rate
    model = load_encodec(args.encodec, args.device) if args.teacher == "encodec" else None
    weights = feature_weights(args.chroma_weight) if model is None else None  # checked before the teachers' pass
    if model is not None and model.config.sampling_rate != rate:
        raise ConfigError(f"EnCodec runs at {model.config.sampling_rate} Hz but the encoder at {rate} Hz")
    teacher = f"EnCodec codes ({args.encodec}, {ENCODEC_BANDWIDTH} kbps)" if model is not None else "log-mel + chroma"
    log(f"{teacher}{'' if args.no_cqt else f' and CQT targets ({CQT_BINS} bins)'} of {len(waves)} recordings")
    acoustic, cqts = teachers_pass(waves, encoder, model, teacher, not args.no_cqt, cqt_file,
                                   progress=not args.no_progress, deadline=deadline)
    spent = [partial(delete_pass_file, acoustic)]  # once labels.pt is saved (`cached_labels`)
    if model is not None:
        codes, sizes = list(acoustic), [model.config.codebook_size] * acoustic.width
        source = f"encodec {args.encodec}"
    else:
        sizes = [args.clusters] * args.codebooks
        codes = kmeans_codes(args, acoustic, weights, deadline)
        source = f"residual k-means on log-mel + chroma (chroma weight {args.chroma_weight:g})"
        spent.append(partial(acoustic.path.with_name(KMEANS_FILE).unlink, missing_ok=True))
    targets: dict[str, Any] = {"labels": codes, "codebook_sizes": sizes, "source": source, SPENT: spent}
    return targets if cqts is None else {**targets, "cqt": cqts}


def kmeans_codes(args: argparse.Namespace, features: FrameRows, weights: torch.Tensor,
                 deadline: Optional[float] = None) -> list[torch.Tensor]:
    """Each recording's residual k-means codes (in `code_dtype`) of its `features`, read from their
    file a recording at a time. Each codebook is kept in `KMEANS_FILE` as it is fitted, so that a
    stopped run, or one past the `deadline`, goes on with the next (`fit_residual_kmeans`); the
    files are deleted once labels.pt holds the codes (`make_targets`)."""
    stages_file = features.path.with_name(KMEANS_FILE)
    record = {"features": features.fingerprint(), "codebooks": args.codebooks, "clusters": args.clusters,
              "kmeans_frames": args.kmeans_frames, "seed": args.seed, "chroma_weight": args.chroma_weight}
    done = fitted_stages(stages_file, record)
    if done:
        log(f"going on from k-means codebook {len(done) + 1} of {args.codebooks}, where a stopped run left it")
    log(f"residual k-means: {args.codebooks} codebooks x {args.clusters} codes")
    quantiser = fit_residual_kmeans(features, args.codebooks, args.clusters, args.kmeans_frames, args.seed, weights,
                                    done, lambda stages: keep_stages(stages_file, record, stages), deadline)
    dtype = code_dtype([args.clusters] * args.codebooks)
    return [quantiser.codes(recording).to(dtype) for recording in features]


def fitted_stages(path: Path, record: dict[str, Any]) -> list[Clusters]:
    """The k-means codebooks a stopped run of the same `record` (features and settings) kept in
    `path`; none for another run's, or where there is no file to read."""
    try:
        kept = torch.load(path, weights_only=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError):
        return []
    if not isinstance(kept, dict) or kept.get("record") != record:
        return []
    return [Clusters(**stage) for stage in kept["stages"]]


def keep_stages(path: Path, record: dict[str, Any], stages: Sequence[Clusters]) -> None:
    """Write the codebooks fitted so far to `path` (whole or not at all), for `fitted_stages`."""
    kept = {"record": record, "stages": [dataclasses.asdict(stage) for stage in stages]}
    atomic_torch_save(path, kept)


def pass_outputs(encodec: Any, cqt: bool, cqt_file: Path) -> list[tuple[Path, int, torch.dtype]]:
    """The files the teachers' pass writes, (path, width, dtype): EnCodec's codes in `code_dtype`
    (C codebooks at `ENCODEC_BANDWIDTH`), else the k-means teacher's features, and, with `cqt`, the CQT."""
    if encodec is not None:
        codebooks = encodec.quantizer.get_num_quantizers_for_bandwidth(ENCODEC_BANDWIDTH)
        acoustic = (cqt_file.with_name(CODES_FILE), codebooks, code_dtype([encodec.config.codebook_size]))
    else:
        acoustic = (cqt_file.with_name(FEATURES_FILE), ACOUSTIC_FEATURES, torch.float32)
    return [acoustic] + ([(cqt_file, CQT_BINS, torch.float16)] if cqt else [])


def teachers_pass(waves: RecordingFiles, encoder: MertEncoder, encodec: Any, teacher: str, cqt: bool, cqt_file: Path,
                  progress: bool = True, deadline: Optional[float] = None) -> tuple[FrameRows, Optional[FrameRows]]:
    """`teacher_rows` written to the files of `pass_outputs` as they are computed and read from them
    (`FrameRows`): the acoustic teacher's (EnCodec's codes or the k-means features), and the CQT's
    (None without `cqt`). A stopped run leaves them partial, and its rerun with the same `teacher`
    (its description, and EnCodec's weights by their `weights_fingerprint`) goes on from the first
    recording missing in either. Past the `deadline` (`time.monotonic()`) the pass stops after a
    recording, or before k-means (or training) where it has just ended: `TimeLimitReached`, for a
    rerun to go on (`zoo.frame_rows.resumable_pass`)."""
    field, hop = encoder.config.receptive_field, encoder.config.frame_hop
    frames = recording_frames(waves, field, hop)
    outputs = pass_outputs(encodec, cqt, cqt_file)
    record = {"files": [str(file) for file in waves.files], "sampling_rate": encoder.processor.sampling_rate,
              "receptive_field": field, "frame_hop": hop, "cqt": cqt, "teacher": teacher,
              "weights": None if encodec is None else weights_fingerprint(encodec)}
    resumable_pass(record, outputs, frames, lambda first: teacher_rows(waves, encoder, encodec, cqt, first, progress),
                   "teacher targets", "k-means" if encodec is None else "training", log, deadline)
    return FrameRows(outputs[0][0], frames), FrameRows(cqt_file, frames) if cqt else None


@torch.no_grad()
def teacher_rows(waves: RecordingFiles, encoder: MertEncoder, encodec: Any, cqt: bool,
                 first: int = 0, progress: bool = True) -> RowGroups:
    """Per recording from `first` on, a group of one: its EnCodec codes (`encodec`, in `code_dtype`,
    else its `acoustic_features`) and, with `cqt`, its (T, Q) CQT in fp16, each recording read once:
    `waves` is `RecordingFiles`, decoded (and resampled) as it is read, and a pass per teacher read
    the corpus twice. A tqdm bar counts the recordings."""
    field, hop = encoder.config.receptive_field, encoder.config.frame_hop
    rate = encoder.processor.sampling_rate
    chroma_cqt = constant_q(rate, hop, CQT_OCTAVES * CHROMA_BINS_PER_OCTAVE) if encodec is None else None
    code_type = code_dtype([encodec.config.codebook_size]) if encodec is not None else None
    transform = constant_q(rate, hop, CQT_BINS) if cqt else None
    with progress_bar(total=len(waves), initial=first, unit="recording", desc="mert teachers",
                      progress=progress) as bar:
        for index in range(first, len(waves)):
            wave = waves[index]
            frames = frame_count(wave.numel(), field, hop)
            acoustic = (acoustic_features(wave, rate, field, hop, chroma_cqt) if encodec is None
                        else encodec_codes(encodec, wave, frames).to(code_type))
            yield [(acoustic,) if transform is None else (acoustic, centred_cqt(transform, wave, field, frames).half())]
            bar.update()


def stored_targets(targets: dict[str, Any]) -> dict[str, Any]:
    """What labels.pt keeps of `make_targets`' targets: their CQT's file by its `FrameRows.record`."""
    if "cqt" not in targets:
        return targets
    return {**targets, "cqt": targets["cqt"].record()}


def cqt_rows(folder: Path, targets: dict[str, Any]) -> Optional[FrameRows]:
    """The CQT targets labels.pt records (None under --no-cqt), checked against it (`FrameRows.from_record`)."""
    record = targets.get("cqt")
    if record is None:
        return None
    if not isinstance(record, dict):
        raise CheckpointError(
            f"{folder / LABELS_FILE} holds its CQT targets itself, as an older zoo wrote them (all held in memory); "
            f"delete it (and checkpoint.pt) to compute them again into {CQT_FILE}, or use another output folder"
        )
    return FrameRows.from_record(folder, record)


def teacher_settings(args: argparse.Namespace, encoder: MertEncoder) -> dict[str, Any]:
    """What the teachers' targets depend on besides the files: frames and each teacher's options."""
    settings = {"sampling_rate": encoder.processor.sampling_rate, "receptive_field": encoder.config.receptive_field,
                "frame_hop": encoder.config.frame_hop, "teacher": args.teacher, "cqt": not args.no_cqt}
    if args.teacher == "encodec":
        return {**settings, "encodec": args.encodec}
    return {**settings, "codebooks": args.codebooks, "clusters": args.clusters, "chroma_weight": args.chroma_weight,
            "kmeans_frames": args.kmeans_frames, "seed": args.seed}


def run(args: argparse.Namespace) -> None:
    """`zoo pretrain mert`: compute the teachers' targets, pretrain, save `OUTPUT/encoder`."""
    if args.threads:
        torch.set_num_threads(args.threads)
    config = train_config_from_args(args)  # its settings checked before the teachers' labels are made
    deadline = config.deadline()
    out = Path(args.output)
    files = run_recordings(args)
    torch.manual_seed(args.seed)
    encoder = encoder_to_pretrain(args, MertEncoder, lambda: MertEncoder(encoder_config(args.variant, args.overrides,
                                                                                      VARIANTS, MertEncoderConfig)))
    field, hop = encoder.config.receptive_field, encoder.config.frame_hop
    rate = encoder.processor.sampling_rate
    log(f"{len(files)} recordings in {args.data}, at {rate} Hz")
    waves = RecordingFiles(files, encoder.processor)
    try:
        targets = cached_labels(out, files, teacher_settings(args, encoder), lambda: stored_targets(
            make_targets(args, encoder, waves, out / CQT_FILE, deadline)), Path(args.data))
    except TimeLimitReached as stop:
        log(f"time limit ({config.time_limit:g} s) reached making the teachers' targets: {stop}; "
            "rerun the same command to go on")
        return
    cqts = cqt_rows(out, targets)
    extra = {"cqt": cqts} if cqts is not None else None
    max_frames = frame_count(int(args.max_seconds * rate), field, hop)
    batches = CropBatches(waves, targets["labels"], args.batch_size, max_frames, field, hop, args.seed, extra=extra)
    noise = tuple(int(seconds * rate) for seconds in args.noise_seconds)
    objective = MertPretraining(encoder, targets["codebook_sizes"], 0 if extra is None else CQT_BINS, args.final_dim,
                                args.mask_prob, args.mask_length, feature_penalty=args.feature_penalty,
                                cqt_weight=args.cqt_weight, mixture_prob=args.mixture_prob, noise_length=noise,
                                feature_grad_mult=args.feature_grad_mult, cqt_target=args.cqt_target)
    if extra is not None and args.cqt_target == "log":
        objective.fit_cqt_scale(cqts)
    settings = command_settings(args)
    train_and_save(objective, batches, out, config.left_before(deadline), encoder, ENCODER_FOLDER,
                   settings, "mert pretrain")
