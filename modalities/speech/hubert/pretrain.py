"""HuBERT pretraining (Hsu et al. 2021, https://arxiv.org/abs/2106.07447): masked prediction
of k-means cluster labels.

The recipe runs in iterations. Iteration 1 clusters MFCC frames (13 cepstra + deltas +
delta-deltas) with k-means and trains an encoder to predict the cluster of masked
frames; iteration 2 clusters the frames of a middle layer of the iteration-1 encoder
and trains a fresh encoder on those labels.

Frame alignment: the conv front end's frame t sees samples [hop*t, hop*t + field) (hop
320, receptive field 400 at 16 kHz: 50 Hz frames of 25 ms). MFCCs are computed as fairseq
computes them, Kaldi MFCC with 25 ms windows every 10 ms (100 Hz, no padding at the
edges) and deltas over those frames, and every second frame is kept, as fairseq's 100 Hz
labels are read at 50 Hz: MFCC frame t and encoder frame t cover the same samples and a
recording of S samples has 1 + (S - 400) // 320 of both. Random crops start on a frame
boundary, so cropping the labels is slicing them.

An iteration's features (MFCCs: 28 MB an hour of audio; a 768-wide layer: 553 MB an hour) are
written to OUTPUT/features.npy as each recording's are computed, read back a recording at a
time by k-means and the labelling (`FrameRows`), and deleted once labels.pt holds the labels, as
fairseq dumps them to disk. A run stopped in that pass, or by `--time-limit`, leaves the file
partial, and its rerun goes on from the first recording it lacks (`zoo.frame_rows.resumable_pass`).

Shapes: B items, S samples, T frames, D width, P final_dim, K clusters, F feature dims,
M masked frames.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from modalities.speech.hubert.model import VARIANTS, HubertEncoder, HubertEncoderConfig
from modalities.speech.hubert_pretrain_options import KMEANS_INITS
from zoo.audio import AudioProcessor, embedded_groups
from zoo.audio_crops import (
    CropBatches, RecordingFiles, frame_count, frame_counts, recording_frames, run_audio_files,
)
from zoo.errors import CheckpointError, ConfigError, InputError
from zoo.frame_rows import FrameRows, RowGroups, delete_pass_file, resumable_pass
from zoo.io import atomic_torch_save
from zoo.outputs import PretrainOutput
from zoo.progress import progress_bar
from zoo.saving import weights_fingerprint
from zoo.run_folders import command_settings
from zoo.training import TimeLimitReached, encoder_to_pretrain, say, train_and_save, train_config_from_args

#: label of padding frames; cross-entropy never sees them
IGNORE_LABEL = -100
#: k-means clusters by iteration, as HuBERT-base: 100 on MFCCs, 500 on the iteration-1 encoder's features
CLUSTERS = {1: 100, 2: 500}
LABELS_FILE = "labels.pt"
#: the iteration's features (`FrameRows`) while k-means is fitted and the labels made; deleted then
FEATURES_FILE = "features.npy"
#: 13 cepstra, their deltas and delta-deltas
MFCC_FEATURES = 39
ENCODER_FOLDER = "encoder"


def check_mask_settings(mask_prob: float, mask_length: int, min_masks: int) -> None:
    """Refuse span-mask settings out of range (mask_prob in [0, 1], mask_length >= 1,
    min_masks >= 0) when an objective is built, not at its first batch; MERT's objective uses it too."""
    if not 0.0 <= mask_prob <= 1.0:
        raise ConfigError(f"mask_prob={mask_prob} must lie in [0, 1]")
    if mask_length < 1 or min_masks < 0:
        raise ConfigError(f"mask_length={mask_length} must be >= 1 and min_masks={min_masks} >= 0")


def compute_span_mask(
    frame_lengths: torch.Tensor,
    num_frames: int,
    mask_prob: float,
    mask_length: int,
    min_masks: int = 0,
    generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """Spans of frames to mask, fairseq's `compute_mask_indices` ("static" spans, overlaps allowed).

    Convention, for an item with n valid frames:

    - a span covers `mask_length` frames, or all n if n is shorter;
    - the number of spans is floor(mask_prob * n / mask_length + u), u ~ U[0, 1) (so its
      mean is mask_prob * n / mask_length), at least `min_masks`, at most the number of
      distinct start positions;
    - starts are drawn without replacement, uniformly among the positions where the whole
      span fits inside the valid frames, so padding frames are never masked;
    - spans may overlap, so the masked fraction is below `mask_prob` (0.57 of the frames
      for HuBERT's 0.8 / 10 on 5 s crops), and every run of masked frames is at least one
      span long.

    Two cases differ from fairseq (@3d262bb) on purpose: its starts exclude the last one
    (its last frame is never masked; fraction 0.5682 against 0.5688 here on 5 s crops), and
    when fewer starts remain than spans (items under about mask_length + min_masks frames)
    it draws among more starts and cuts spans at the end, raising when they cover the whole
    item, where an item of at most `mask_length` frames is masked whole here. fairseq then
    evens out the masked counts of a batch: see `equalise_mask_counts`.

    Args:
        frame_lengths: (B,) valid frames per item.
        num_frames: T, the padded length of the mask.
        mask_prob: span starts per frame times `mask_length` (HuBERT: 0.8).
        mask_length: frames per span (HuBERT: 10, i.e. 200 ms).
        min_masks: fewest spans per item (fairseq's HuBERT uses 2).
        generator: torch RNG to draw from; None uses the global one (which the training
            loop checkpoints, so that resumed runs draw the same masks).

    Returns:
        (B, T) bool, True for frames replaced by the mask embedding.
    """
    check_mask_settings(mask_prob, mask_length, min_masks)
    lengths = frame_lengths.tolist()
    if lengths and max(lengths) > num_frames:
        raise InputError(f"an item has {max(lengths)} valid frames but the mask has num_frames={num_frames}")
    mask = torch.zeros(len(lengths), num_frames, dtype=torch.bool)
    for row, length in enumerate(lengths):
        if length <= 0:
            continue
        span = min(mask_length, length)
        positions = length - span + 1
        wanted = int(mask_prob * length / mask_length + float(torch.rand((), generator=generator)))
        count = min(max(min_masks, wanted), positions)
        starts = torch.randperm(positions, generator=generator)[:count]
        mask[row, (starts[:, None] + torch.arange(span)).flatten()] = True
    return mask.to(frame_lengths.device)


def equalise_mask_counts(mask: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Keep in every row as many masked frames as the row with the fewest, as fairseq's
    `compute_mask_indices` does after drawing spans (`require_same_masks`, on by default and
    in HuBERT's and MERT's pretraining).

    The frames a row keeps are a random subset of its masked ones, so a trimmed row may hold
    runs shorter than a span. Spans overlap by chance, so equal-length rows still differ in
    masked count, and trimming lowers the batch's masked fraction: for HuBERT's 0.8 / 10 on
    8 crops of 250 frames, 0.506 (fairseq, 10,000 rows: 0.506) where the rows alone give
    0.569; on 8 crops of 30 frames, 0.41 where they give 0.60.

    Args:
        mask: (B, T) bool spans from `compute_span_mask`.
        generator: torch RNG to draw from; None uses the global one.

    Returns:
        (B, T) bool, a subset of `mask` with the same count in every row.
    """
    counts = mask.sum(1)
    fewest = int(counts.min()) if len(counts) else 0
    equal = mask.clone()
    for row in (counts > fewest).nonzero().flatten().tolist():
        masked = mask[row].nonzero().flatten()
        dropped = masked[torch.randperm(len(masked), generator=generator)[fewest:].to(masked.device)]
        equal[row, dropped] = False
    return equal


def scale_gradient(x: torch.Tensor, factor: float) -> torch.Tensor:
    """`x` unchanged forward, its gradient times `factor` backward (fairseq's GradMultiply):
    HuBERT and MERT train the conv front end ten times slower than the transformer
    (`feature_grad_mult` 0.1)."""
    if factor == 1.0:
        return x
    return x * factor + x.detach() * (1.0 - factor)


# ---------------------------------------------------------------------------------------
# Labels: features -> k-means -> one cluster id per encoder frame


def frame_geometry(config: HubertEncoderConfig) -> tuple[int, int]:
    """(receptive field, hop) of the conv front end in samples: (400, 320) for HuBERT."""
    return config.receptive_field, config.frame_hop


def mfcc_features(wave: torch.Tensor, sampling_rate: int, field: int, hop: int) -> torch.Tensor:
    """(S,) waveform -> (T, 39) MFCC + deltas + delta-deltas, frame t over samples [hop*t, hop*t+field).

    Kaldi MFCC as fairseq's `dump_mfcc_feature.py` (13 cepstra, 23 mel bins, no energy
    term, no dither), window set to the encoder's field, computed every hop / 2 samples
    (fairseq's 100 Hz) with deltas over those frames, then every second frame kept. Deltas
    over the kept frames alone would span twice the time: they differed from fairseq's by
    0.81 of their norm (delta-deltas 1.03) on FSDD. The kept frames are copied out, so that a
    corpus's features held until k-means is fitted take their own 28 MB an hour at 16 kHz, not
    the 56 MB of the frames they were read from.
    """
    import torchaudio.compliance.kaldi as kaldi
    import torchaudio.functional

    if hop % 2:
        raise ConfigError(f"MFCC labels are read every second frame of hop / 2; hop={hop} samples is odd")
    if wave.numel() < field:
        wave = F.pad(wave, (0, field - wave.numel()))
    cepstra = kaldi.mfcc(
        wave[None].float(), sample_frequency=sampling_rate, frame_length=1000.0 * field / sampling_rate,
        frame_shift=1000.0 * (hop // 2) / sampling_rate, num_ceps=13, use_energy=False, dither=0.0,
    ).T
    deltas = torchaudio.functional.compute_deltas(cepstra)
    delta_deltas = torchaudio.functional.compute_deltas(deltas)
    return torch.cat([cepstra, deltas, delta_deltas]).T[::2].contiguous()  # not a view of all 100 Hz frames


def layer_feature_groups(encoder: HubertEncoder, recordings: Sequence[Any], layer: int, batch_size: int = 16,
                         progress: bool = True) -> Iterator[list[torch.Tensor]]:
    """(T_i, D) frames of hidden state `layer` (0 = input embeddings) of a trained encoder, one for
    every frame the student frames of each recording (a file, or a waveform at the encoder's rate):
    its `embed(pool="none")`, which cuts a recording longer than its window on frame boundaries
    (`zoo.audio.framed_windows`) so that every frame has its label. The recordings are prepared a
    group of `embed`'s at a time (`embedded_groups`), a long file read a window at a time, and each
    group's rows are yielded as it is done, so a corpus is read once and never held whole.

    Groups, not recordings, because a recording's rows depend on the batch it was padded in (by
    2e-6 in k-means' centres on FSDD): a pass stopped between groups goes on with the groups a
    straight pass makes from there, so to the same features bit for bit (`resumable_pass`).
    """
    for _, group in embedded_groups(encoder, recordings, encoder.processor.sampling_rate, progress,
                                    layer=layer, pool="none", batch_size=batch_size):
        yield group


@dataclasses.dataclass
class Clusters:
    """K-means centroids over features shifted by `mean` and divided by `std`: `assign` gives
    each frame its nearest one.

    HuBERT's labels cluster the features as they are (mean 0, std 1), as fairseq's
    `learn_kmeans.py` does: on MFCCs the 13 cepstra then weigh most (96 % of the variance on
    FSDD). MERT's k-means teacher standardises each dimension with the mean and std of the
    frames it was fitted on, so that log-mel and chroma dimensions weigh alike.
    """

    centers: torch.Tensor  # (K, F), in the shifted and divided units (times `fit_clusters`' weights)
    mean: torch.Tensor  # (F,)
    std: torch.Tensor  # (F,), divided by `fit_clusters`' weights

    def assign(self, features: torch.Tensor) -> torch.Tensor:
        """(T, F) features -> (T,) cluster ids."""
        scaled = (features.float() - self.mean) / self.std
        return torch.cdist(scaled, self.centers).argmin(dim=1)

    def centroids(self, ids: torch.Tensor) -> torch.Tensor:
        """(T,) cluster ids -> (T, F) their centres in feature units (what a residual stage subtracts)."""
        return self.centers[ids] * self.std + self.mean


def fit_clusters(features: Sequence[torch.Tensor], num_clusters: int, max_frames: int = 100_000,
                 seed: int = 0, weights: Optional[torch.Tensor] = None, standardise: bool = False,
                 inits: int = KMEANS_INITS) -> Clusters:
    """MiniBatchKMeans with fairseq's `learn_kmeans.py` settings on at most `max_frames` frames drawn
    at random, each dimension standardised first if `standardise` (MERT's k-means teacher).

    `weights` (F,) scales each feature in the distance (default: all 1); it is folded into
    `Clusters.std`, so `assign` needs nothing more.
    """
    from sklearn.cluster import MiniBatchKMeans

    frames = drawn_frames(features, max_frames, np.random.default_rng(seed))
    if len(frames) < num_clusters:
        raise ConfigError(f"{len(frames)} frames cannot make {num_clusters} clusters; use fewer (--clusters) "
                          "or more audio")
    if standardise:
        mean, std = frames.mean(0), frames.std(0).clamp(min=1e-5)
    else:
        mean, std = torch.zeros(frames.shape[1]), torch.ones(frames.shape[1])
    if weights is not None:
        std = std / weights
    kmeans = MiniBatchKMeans(n_clusters=num_clusters, batch_size=10_000, max_iter=100, n_init=inits,
                             max_no_improvement=100, reassignment_ratio=0.0, random_state=seed)
    kmeans.fit(((frames - mean) / std).numpy())
    return Clusters(torch.from_numpy(kmeans.cluster_centers_).float(), mean, std)


def drawn_frames(features: Sequence[torch.Tensor], max_frames: int, rng: np.random.Generator) -> torch.Tensor:
    """Every frame of `features` in order, or `max_frames` of them drawn at random without
    replacement (kept in order), as float32: the drawn rows are taken from each recording's
    features, so that the corpus's frames are never joined into one copy (HuBERT's MFCCs: 28 MB
    an hour; MERT's log-mel + chroma: 82 MB an hour), and copied into one tensor as each
    recording's are read, so that they are not held twice either (a list of the rows read from
    features.npy, then their concatenation: the default 100,000 frames of a 768-wide layer raised
    the peak by 588 MB, now by 297). A recording none of whose frames is drawn is not read."""
    counts = frame_counts(features)
    total = int(counts.sum())
    chosen = np.arange(total) if total <= max_frames else np.sort(rng.choice(total, max_frames, replace=False))
    ends = np.cumsum(counts)
    bounds = np.searchsorted(chosen, np.concatenate([[0], ends]))
    drawn = None
    for index in np.flatnonzero(bounds[1:] > bounds[:-1]):
        first, last, start = bounds[index], bounds[index + 1], ends[index] - counts[index]
        rows = features[index][torch.from_numpy(chosen[first:last] - start)]
        if drawn is None:
            drawn = torch.empty(len(chosen), rows.shape[1])
        drawn[first:last] = rows
    return torch.empty(0, 0) if drawn is None else drawn


def cluster_labels(features: Sequence[torch.Tensor], clusters: Clusters) -> list[torch.Tensor]:
    """Each recording's (T, F) features -> its (T,) k-means cluster ids, the iteration's targets;
    `features` may be a `FrameRows`, read a recording at a time."""
    return [clusters.assign(f) for f in features]


# ---------------------------------------------------------------------------------------
# The objective


class HubertPretraining(nn.Module):
    """HuBERT's masked prediction objective around a `HubertEncoder`.

    Spans of frames (`compute_span_mask`, then `equalise_mask_counts` as fairseq) are
    replaced by the encoder's learned mask embedding before the transformer; the last
    layer's output h_t of each masked frame is projected (`final_proj`, D -> P) and scored
    against one embedding e_k per cluster:

        logit_k = cos(W h_t + b, e_k) / logit_temp,
        loss = mean over masked t of CE(logits, y_t) + feature_penalty * mean(conv features^2)

    Only masked frames count (fairseq's pred_masked_weight 1, pred_nomask_weight 0). The
    penalty is fairseq's `features_pen` with HuBERT-base's `loss_weights [10]`; the conv
    front end's gradient, the penalty's included, is scaled by `feature_grad_mult` (0.1).
    Label embeddings start uniform in [0, 1), as fairseq's `label_embs_concat`.

    Args:
        encoder: the encoder to pretrain (`encoder.save_pretrained` afterwards).
        num_clusters: K, the number of k-means clusters of the labels.
        final_dim: P, width of the prediction space (HuBERT-base: 256).
        mask_prob / mask_length / min_masks: see `compute_span_mask` (HuBERT: 0.8 / 10 / 2).
        logit_temp: temperature of the cosine logits (HuBERT: 0.1).
        feature_penalty: weight of the mean squared conv features (HuBERT-base: 10).
        feature_grad_mult: scale of the gradient that reaches the conv front end (HuBERT-base: 0.1).
    """

    def __init__(self, encoder: HubertEncoder, num_clusters: int, final_dim: int = 256, mask_prob: float = 0.8,
                 mask_length: int = 10, min_masks: int = 2, logit_temp: float = 0.1, feature_penalty: float = 10.0,
                 feature_grad_mult: float = 0.1) -> None:
        super().__init__()
        if num_clusters < 2 or final_dim < 1 or logit_temp <= 0:
            raise ConfigError(
                f"num_clusters={num_clusters} must be >= 2, final_dim={final_dim} >= 1 and logit_temp={logit_temp} > 0"
            )
        check_loss_settings(feature_penalty, feature_grad_mult)
        check_mask_settings(mask_prob, mask_length, min_masks)
        self.encoder = encoder
        self.final_proj = nn.Linear(encoder.embed_dim, final_dim)
        self.label_embeddings = nn.Parameter(torch.rand(num_clusters, final_dim))
        self.mask_prob, self.mask_length, self.min_masks = mask_prob, mask_length, min_masks
        self.logit_temp = logit_temp
        self.feature_penalty, self.feature_grad_mult = feature_penalty, feature_grad_mult

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """(M, D) frame features -> (M, K) cosine logits, in float32 even under autocast."""
        with torch.autocast(device_type=hidden.device.type, enabled=False):
            projected = F.normalize(self.final_proj(hidden.float()), dim=-1)
            return projected @ F.normalize(self.label_embeddings.float(), dim=-1).T / self.logit_temp

    def forward(self, batch: dict[str, torch.Tensor]) -> PretrainOutput:
        """Masked prediction loss of one batch (from `CropBatches`, or any padded batch whose
        labels are -100 on padding frames).

        Shapes:
            input_values (B, S), attention_mask (B, S), labels (B, T).
        """
        input_values, attention_mask, labels = batch["input_values"], batch["attention_mask"], batch["labels"]
        sample_lengths = attention_mask.sum(-1)
        frame_lengths = self.encoder.frame_lengths(sample_lengths)
        num_frames = int(frame_lengths.max())
        if labels.shape[1] != num_frames:
            raise InputError(
                f"labels have {labels.shape[1]} frames but the audio gives {num_frames}; check the framing")
        mask = equalise_mask_counts(compute_span_mask(frame_lengths.cpu(), num_frames, self.mask_prob,
                                                      self.mask_length, self.min_masks)).to(labels.device)
        features, output = encode_masked(self.encoder, input_values, sample_lengths, mask, self.feature_grad_mult)
        targets = mask & (labels != IGNORE_LABEL)
        logits = self.logits(output.last_hidden_state[targets])
        code_loss = F.cross_entropy(logits, labels[targets])
        penalty = features.float().pow(2).mean()
        logs = {
            "code_loss": code_loss.item(),
            "accuracy": (logits.argmax(-1) == labels[targets]).float().mean().item(),
            "feature_penalty": penalty.item(),
            "masked_fraction": (targets.sum() / frame_lengths.sum()).item(),
        }
        return PretrainOutput(loss=code_loss + self.feature_penalty * penalty, logs=logs)


def check_loss_settings(feature_penalty: float, feature_grad_mult: float) -> None:
    """Refuse a negative feature penalty or a gradient scale outside [0, 1], quoting the released
    recipes' values; MERT's objective uses it too."""
    if feature_penalty < 0:
        raise ConfigError(f"feature_penalty={feature_penalty} must be >= 0 (HuBERT-base and MERT: 10)")
    if not 0.0 <= feature_grad_mult <= 1.0:
        raise ConfigError(f"feature_grad_mult={feature_grad_mult} must lie in [0, 1] (HuBERT-base and MERT-95M: 0.1)")


def encode_masked(encoder: HubertEncoder, input_values: torch.Tensor, sample_lengths: torch.Tensor,
                  mask: torch.Tensor, feature_grad_mult: float) -> tuple[torch.Tensor, Any]:
    """The encoder's forward with `mask` (B, T) frames masked, split to keep its (B, T, C) conv
    features (for the feature penalty) and scale their gradient by `feature_grad_mult`."""
    input_values = input_values.to(encoder.dtype)
    features = scale_gradient(encoder.extract_features(input_values, sample_lengths), feature_grad_mult)
    output = encoder.encode_features(features, input_values, sample_lengths, mask_time_indices=mask)
    return features, output


# ---------------------------------------------------------------------------------------
# Command line: zoo pretrain hubert ...


#: fairseq's pretraining dropouts by size, over the architecture's own (VARIANTS, which the released
#: checkpoints' configs share): its base yaml drops the projected input (dropout_input) 0.1 and a
#: layer (encoder_layerdrop) 0.05, its large and xlarge yamls drop nothing
PRETRAIN_DROPOUTS = {
    "base": dict(feat_proj_dropout=0.1, layerdrop=0.05),
    "large": dict(hidden_dropout=0.0, attention_dropout=0.0),
    "xlarge": dict(hidden_dropout=0.0, attention_dropout=0.0),
}
#: the sizes fairseq pretrains on normalised waveforms (its large and xlarge yamls' task.normalize: true,
#: as the released checkpoints' do_normalize); base and the zoo's tiny take them as they are
NORMALIZED_VARIANTS = ("large", "xlarge")


def encoder_config(variant: Optional[str], overrides: Sequence[str], variants: Optional[dict[str, dict]] = None,
                   config_class: type[HubertEncoderConfig] = HubertEncoderConfig) -> HubertEncoderConfig:
    """The variant's config (None: tiny) with `FIELD=JSON` overrides applied (HuBERT's variants with
    fairseq's pretraining dropouts, unless `variants` and `config_class` name a family built on it,
    e.g. MERT, whose variants carry their own)."""
    name = variant or "tiny"
    fields = {**VARIANTS[name], **PRETRAIN_DROPOUTS.get(name, {})} if variants is None else dict(variants[name])
    for override in overrides:
        name, separator, text = override.partition("=")
        if not separator:
            raise ConfigError(f"--set {override!r} is not FIELD=VALUE, e.g. --set hidden_size=256")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        fields[name] = tuple(value) if isinstance(value, list) else value
    valid = {f.name for f in dataclasses.fields(config_class)}
    unknown = sorted(set(fields) - valid)
    if unknown:
        raise ConfigError(f"--set names unknown config fields {unknown}; valid fields are {sorted(valid)}")
    return config_class(**fields)


def fresh_encoder(args: argparse.Namespace) -> HubertEncoder:
    """A random-init encoder of --variant and --set, reading waveforms as fairseq's recipe of that
    size does: large and xlarge normalised (their runs were taught on raw waveforms before)."""
    return HubertEncoder(encoder_config(args.variant, args.overrides),
                         AudioProcessor(do_normalize=args.variant in NORMALIZED_VARIANTS))


def check_iteration(args: argparse.Namespace) -> None:
    """Refuse options of the other iteration before any features are computed: iteration 2 needs
    --labels-from, and --labels-from and --layer mean nothing to iteration 1."""
    if args.iteration == 2 and not args.labels_from:
        raise ConfigError("--iteration 2 clusters a trained encoder's features; pass --labels-from ITERATION1_RUN")
    if args.iteration == 1 and (args.labels_from or args.layer is not None):
        raise ConfigError("--labels-from and --layer are for --iteration 2; iteration 1 clusters MFCCs")


def load_teacher(path: str | Path, device: str = "cpu") -> HubertEncoder:
    """The encoder of an earlier iteration: a run folder (its encoder/), an encoder folder or a model
    name, on the run's `device`: it embeds the whole corpus for k-means, which ran on the CPU
    while the student trained on the GPU."""
    from zoo.hub import load_trained, model_to

    encoder = load_trained(path, "--labels-from", (ENCODER_FOLDER,))
    if not isinstance(encoder, HubertEncoder):
        raise InputError(f"--labels-from {str(path)!r} holds a {type(encoder).__name__}, not a HuBERT encoder")
    return model_to(encoder, device, None)


log = partial(say, "hubert pretrain")


#: a key of what makes labels.pt, not saved in it: the deletions of the pass files the labels were made
#: of, done once labels.pt is written (deleted before, a kill in between made the rerun do the pass again)
SPENT = "spent"


def make_labels(args: argparse.Namespace, encoder: HubertEncoder, waves: RecordingFiles,
                deadline: Optional[float] = None) -> dict[str, Any]:
    """Fit k-means on the iteration's features and label every frame of every recording, reading
    each file once. Iteration 1 takes the MFCCs of the waveforms the encoder trains on; iteration 2
    gives the teacher the files, which its own processor prepares: `waves` are prepared for the
    encoder, and a teacher's `do_normalize` normalised them again (a quiet clip under fairseq's
    1e-5 variance floor, std 0.71 once, came to the teacher at std 1.0). The features pass through
    `FEATURES_FILE` in --output (`zoo.frame_rows.resumable_pass`, which stops past the `deadline`)."""
    field, hop = frame_geometry(encoder.config)
    rate = encoder.processor.sampling_rate
    if args.iteration == 1:
        log(f"MFCC features of {len(waves)} recordings")
        source, width, weights = "mfcc", MFCC_FEATURES, None

        def compute(first: int) -> RowGroups:
            with progress_bar(total=len(waves), initial=first, unit="recording", desc="hubert mfcc",
                              progress=not args.no_progress) as bar:
                for index in range(first, len(waves)):
                    yield [(mfcc_features(waves[index], rate, field, hop),)]
                    bar.update()
    else:
        teacher = load_teacher(args.labels_from, args.device)
        if frame_geometry(teacher.config) != (field, hop) or teacher.processor.sampling_rate != rate:
            raise ConfigError(
                f"--labels-from {args.labels_from!r} frames audio differently (rate {teacher.processor.sampling_rate}, "
                f"field/hop {frame_geometry(teacher.config)}) than this encoder (rate {rate}, field/hop {(field, hop)})"
            )
        layer = teacher.num_layers // 2 if args.layer is None else args.layer
        log(f"layer {layer} features of {len(waves)} recordings from {args.labels_from}")
        source, width = f"layer {layer} of {args.labels_from}", teacher.config.hidden_size
        weights = weights_fingerprint(teacher)  # a teacher saved again in place between two calls is not mixed in

        def compute(first: int) -> RowGroups:
            for group in layer_feature_groups(teacher, waves.files[first:], layer, progress=not args.no_progress):
                yield [(rows.float(),) for rows in group]
    record = {"files": [str(file) for file in waves.files], "sampling_rate": rate, "receptive_field": field,
              "frame_hop": hop, "features": source, "weights": weights}
    frames = recording_frames(waves, field, hop)
    path = Path(args.output) / FEATURES_FILE
    resumable_pass(record, [(path, width, torch.float32)], frames, compute, "features", "k-means", log, deadline)
    features = FrameRows(path, frames)
    total = int(features.frames.sum())
    log(f"k-means: {clusters_of(args)} clusters on {min(args.kmeans_frames, total)} of {total} frames")
    kmeans = kmeans_settings(args)
    clusters = fit_clusters(features, clusters_of(args), args.kmeans_frames, args.seed,
                            standardise=kmeans["kmeans_features"] == "standardised", inits=kmeans["kmeans_inits"])
    labels = cluster_labels(features, clusters)
    return {"labels": labels, "source": source, **dataclasses.asdict(clusters),
            SPENT: [partial(delete_pass_file, features)]}


def cached_labels(folder: Path, files: Sequence[Path], settings: dict[str, Any],
                  compute: Callable[[], dict[str, Any]], data: Path) -> dict[str, Any]:
    """`folder/labels.pt` if it was made for these files (under the `data` folder, which may have
    moved since) with these teacher `settings`, else computed and saved (a resumed run reuses it).
    Another file list or other settings are an error rather than a silent reuse: a rerun with,
    say, another --clusters in the same folder would otherwise train on the old teacher's labels."""
    path = folder / LABELS_FILE
    names = [str(file) for file in files]
    if path.is_file():
        stored = torch.load(path, weights_only=True)
        if not same_files(stored["files"], files, data):
            raise CheckpointError(
                f"{path} labels a different set of files than --data/--exclude give now; "
                "use another output folder or delete the file"
            )
        before = stored.get("settings")
        if before is not None:  # labels an older zoo made keep the k-means settings it had then
            before = {**{key: settings[key] for key in ADDED_TEACHER_SETTINGS & settings.keys()}, **before}
        if before != settings:
            changed = "none recorded: an older zoo made it" if before is None else ", ".join(
                f"{key}={before.get(key)!r} then, {settings.get(key)!r} now"
                for key in sorted(before.keys() | settings.keys()) if before.get(key) != settings.get(key))
            raise CheckpointError(
                f"{path} was made by a teacher with other settings ({changed}); "
                "use another output folder, or delete the file (and checkpoint.pt) to start over"
            )
        return stored
    result = {"files": names, "settings": settings, **compute()}
    spent = result.pop(SPENT, [])
    folder.mkdir(parents=True, exist_ok=True)
    atomic_torch_save(path, result)
    for delete in spent:
        delete()
    return result


def same_files(stored: Sequence[str], files: Sequence[Path], data: Path) -> bool:
    """Whether labels.pt's file names (as the run listed them when it began) are `files`, in
    order, perhaps under another `data` folder: a run may resume on data that has moved."""
    relative = [file.relative_to(data).parts if file.is_relative_to(data) else file.parts for file in files]
    return len(stored) == len(files) and all(Path(name).parts[-len(parts):] == parts
                                             for name, parts in zip(stored, relative))


def files_labelled_in(folder: Path) -> Optional[list[Path]]:
    """The files `folder/labels.pt` labels, None without one: what a run that an older zoo began
    (without inputs.json) resumes on."""
    path = folder / LABELS_FILE
    return [Path(name) for name in torch.load(path, weights_only=True)["files"]] if path.is_file() else None


def run_recordings(args: argparse.Namespace) -> list[Path]:
    """The recordings of the run: --data's (less --exclude's) when it begins, those it began with
    when it resumes, so that its labels.pt still labels them (`run_audio_files`)."""
    out = Path(args.output)
    return run_audio_files(out, [args.data], args.exclude, lambda: files_labelled_in(out))


def teacher_settings(args: argparse.Namespace, encoder: HubertEncoder) -> dict[str, Any]:
    """What the iteration's labels depend on besides the files: frames, features and k-means."""
    field, hop = frame_geometry(encoder.config)
    return {"sampling_rate": encoder.processor.sampling_rate, "receptive_field": field, "frame_hop": hop,
            "iteration": args.iteration, "labels_from": args.labels_from, "layer": args.layer,
            "clusters": clusters_of(args), "kmeans_frames": args.kmeans_frames, "seed": args.seed,
            **kmeans_settings(args)}


#: teacher settings an older zoo did not record in labels.pt (it standardised features, 3 restarts)
ADDED_TEACHER_SETTINGS = frozenset({"kmeans_features", "kmeans_inits"})


def clusters_of(args: argparse.Namespace) -> int:
    """--clusters, or HuBERT-base's for the iteration (`CLUSTERS`)."""
    return args.clusters or CLUSTERS[args.iteration]


def kmeans_settings(args: argparse.Namespace) -> dict[str, Any]:
    """How k-means clusters the features: --kmeans-features and --kmeans-inits, or fairseq's
    settings. They stay None in args.json, so that a run an older zoo began still resumes."""
    return {"kmeans_features": args.kmeans_features or "raw", "kmeans_inits": args.kmeans_inits or KMEANS_INITS}


def run(args: argparse.Namespace) -> None:
    """`zoo pretrain hubert`: make the iteration's labels, pretrain, save `OUTPUT/encoder`."""
    if args.threads:
        torch.set_num_threads(args.threads)
    config = train_config_from_args(args)  # its settings checked before the teachers' labels are made
    deadline = config.deadline()
    check_iteration(args)
    args.clusters = clusters_of(args)  # args.json records the number, as an older zoo's runs did
    out = Path(args.output)
    files = run_recordings(args)
    torch.manual_seed(args.seed)
    encoder = encoder_to_pretrain(args, HubertEncoder, lambda: fresh_encoder(args))
    field, hop = frame_geometry(encoder.config)
    log(f"{len(files)} recordings in {args.data}")
    waves = RecordingFiles(files, encoder.processor)
    try:
        labels = cached_labels(out, files, teacher_settings(args, encoder),
                               lambda: make_labels(args, encoder, waves, deadline), Path(args.data))
    except TimeLimitReached as stop:
        log(f"time limit ({config.time_limit:g} s) reached in the features' pass: {stop}; "
            "rerun the same command to go on")
        return
    max_frames = frame_count(int(args.max_seconds * encoder.processor.sampling_rate), field, hop)
    batches = CropBatches(waves, labels["labels"], args.batch_size, max_frames, field, hop, args.seed)
    objective = HubertPretraining(encoder, len(labels["centers"]), args.final_dim, args.mask_prob,
                                  args.mask_length, logit_temp=args.logit_temp, feature_penalty=args.feature_penalty,
                                  feature_grad_mult=args.feature_grad_mult)
    settings = command_settings(args)
    train_and_save(objective, batches, out, config.left_before(deadline), encoder, ENCODER_FOLDER,
                   settings, "hubert pretrain")
