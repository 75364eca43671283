"""BEATs' iterative pretraining (`zoo pretrain beats`): SSL model and tokenizer in turns.

Upstream released no pretraining code (microsoft/unilm#1628); this follows the paper:

1. `--stage ssl --tokenizer random` (iteration 1): a frozen random-projection tokenizer
   (a random matrix on each 16 x 16 fbank patch, then the nearest row of a random unit
   codebook) labels every patch; 75 % of the patches are dropped, the encoder sees the
   rest (each keeps its position in the relative bias), a label predictor fills mask
   embeddings in at the dropped places and predicts their labels (cross-entropy).
2. `--stage tokenizer --teacher RUN` : a tokenizer (BEATs encoder + quantizer) is trained
   by distillation: its quantized patches go through an estimator transformer that must
   predict the teacher's last layer (cosine loss, straight-through quantization,
   commitment loss, codebook by EMA from a k-means start).
3. `--stage ssl --tokenizer RUN` (iteration 2): as 1 with the trained tokenizer's labels.

The label predictor and the estimator are transformers of this family's own layers;
their depth is the zoo's choice (the paper's is not stated in released code).

Shapes: B items, N patch tokens, V visible tokens, M masked, D width, K codes, C code width.
"""

from __future__ import annotations

import argparse
from functools import partial
from pathlib import Path
from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from modalities.audio.beats.model import HOP, VARIANTS, BEATsConfig, BEATsEncoder, TransformerEncoder
from modalities.audio.beats.quantizer import CosineCodebook
from zoo.audio_crops import CropBatches, RecordingFiles, run_audio_files
from zoo.config import parse_overrides
from zoo.errors import ConfigError, InputError
from zoo.outputs import PretrainOutput
from zoo.run_folders import command_settings
from zoo.training import encoder_to_pretrain, say, train_and_save, train_config_from_args


def patch_rows(fbanks: torch.Tensor, patch: int) -> torch.Tensor:
    """(B, F, 128) -> (B, N, patch * patch) flattened patches, time-major like the encoder's tokens."""
    columns = fbanks.shape[1] // patch
    blocks = fbanks[:, : columns * patch].reshape(len(fbanks), columns, patch, -1, patch)
    return blocks.permute(0, 1, 3, 2, 4).reshape(len(fbanks), -1, patch * patch)


class RandomProjectionTokenizer(nn.Module):
    """Iteration 1's labels: nearest random unit code of a random projection of each patch (frozen)."""

    def __init__(self, patch: int, size: int, dim: int, seed: int = 0) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.patch = patch
        self.register_buffer("projection", torch.randn(patch * patch, dim, generator=generator) / patch)
        self.codebook = CosineCodebook(size, dim)
        self.codebook.embed.copy_(F.normalize(torch.randn(size, dim, generator=generator), dim=-1))

    def forward(self, fbanks: torch.Tensor) -> torch.Tensor:
        """(B, F, 128) -> (B, N) labels."""
        return self.codebook.nearest(patch_rows(fbanks.float(), self.patch) @ self.projection)


class TrainedTokenizer(nn.Module):
    """Labels from a trained BEATs tokenizer (frozen, eval mode)."""

    def __init__(self, tokenizer: BEATsEncoder) -> None:
        super().__init__()
        self.tokenizer = tokenizer.eval().requires_grad_(False)

    def train(self, mode: bool = True) -> "TrainedTokenizer":
        return super().train(False)

    def forward(self, fbanks: torch.Tensor) -> torch.Tensor:
        tokens = self.tokenizer.patch_tokens(fbanks)
        mask = torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)
        states = self.tokenizer.transformer(tokens, mask, torch.arange(tokens.shape[1], device=tokens.device))
        return self.tokenizer.quantize(states[-1])


def keep_positions(batch: int, tokens: int, mask_ratio: float) -> torch.Tensor:
    """(B, V) sorted positions left visible: a random (1 - mask_ratio) share of each item's tokens.

    Drawn from torch's global generator, whose state the trainer's checkpoint keeps.
    """
    visible = max(1, round(tokens * (1 - mask_ratio)))
    order = torch.rand(batch, tokens).argsort(-1)
    return order[:, :visible].sort(-1).values


class BEATsPretraining(nn.Module):
    """Masked label prediction: encoder on visible patches, predictor on the full sequence.

    Args:
        encoder: the student `BEATsEncoder` (no codebook).
        labeler: a module (B, F, 128) fbanks -> (B, N) labels, frozen.
        num_labels: K of the labeler.
        mask_ratio: share of patches dropped (paper: 0.75).
        predictor_layers: depth of the label predictor.
    """

    def __init__(self, encoder: BEATsEncoder, labeler: nn.Module, num_labels: int, mask_ratio: float = 0.75,
                 predictor_layers: int = 2) -> None:
        super().__init__()
        if not 0.0 < mask_ratio < 1.0:
            raise ConfigError(f"mask_ratio={mask_ratio}; use a value in (0, 1), the paper's is 0.75")
        self.encoder, self.labeler, self.mask_ratio = encoder, labeler.requires_grad_(False), mask_ratio
        self.mask_embedding = nn.Parameter(torch.zeros(encoder.embed_dim).normal_(std=0.02))
        self.predictor = TransformerEncoder(encoder.config.replace(encoder_layers=predictor_layers))
        self.head = nn.Linear(encoder.embed_dim, num_labels)

    def forward(self, batch: dict[str, torch.Tensor]) -> PretrainOutput:
        waves = batch["input_values"]
        lengths = batch["attention_mask"].sum(-1)
        fbanks = self.encoder.fbanks(waves, lengths)
        with torch.no_grad():
            labels = self.labeler(fbanks)
        tokens = self.encoder.patch_tokens(fbanks)
        count, width = tokens.shape[1], tokens.shape[2]
        keep = keep_positions(len(tokens), count, self.mask_ratio).to(tokens.device)
        visible = tokens.gather(1, keep[..., None].expand(-1, -1, width))
        every = torch.ones(keep.shape, dtype=torch.bool, device=tokens.device)
        encoded = self.encoder.transformer(visible, every, keep)[-1]
        full = self.mask_embedding.to(encoded.dtype).expand(len(tokens), count, width).clone()
        full.scatter_(1, keep[..., None].expand(-1, -1, width), encoded)
        predicted = self.predictor(full, torch.ones(full.shape[:2], dtype=torch.bool, device=full.device),
                                   torch.arange(count, device=full.device))[-1]
        masked = torch.ones(len(tokens), count, dtype=torch.bool, device=tokens.device)
        masked.scatter_(1, keep, False)
        logits = self.head(predicted[masked]).float()
        loss = F.cross_entropy(logits, labels[masked])
        accuracy = (logits.argmax(-1) == labels[masked]).float().mean().item()
        return PretrainOutput(loss=loss, logs={"accuracy": accuracy, "masked": int(masked.sum())})


class TokenizerDistillation(nn.Module):
    """Train a tokenizer whose quantized patches let an estimator predict a teacher's last layer.

    Loss = (1 - cos(estimator(quantized), teacher)) + commitment ||unit(z) - sg(code)||^2;
    the codebook starts from k-means on the first batch and then follows an EMA.
    """

    def __init__(self, tokenizer: BEATsEncoder, teacher: BEATsEncoder, estimator_layers: int = 2) -> None:
        super().__init__()
        config = tokenizer.config
        self.tokenizer = tokenizer
        self.teacher = teacher.eval().requires_grad_(False)
        self.estimator_in = nn.Linear(config.codebook_dim, config.encoder_embed_dim)
        self.estimator = TransformerEncoder(config.replace(encoder_layers=estimator_layers, codebook_size=0,
                                                           codebook_dim=0))
        self.estimator_out = nn.Linear(config.encoder_embed_dim, teacher.embed_dim)
        self.register_buffer("codebook_ready", torch.zeros((), dtype=torch.bool))

    def train(self, mode: bool = True) -> "TokenizerDistillation":
        super().train(mode)
        self.teacher.eval()
        return self

    def forward(self, batch: dict[str, torch.Tensor]) -> PretrainOutput:
        waves, attention = batch["input_values"], batch["attention_mask"]
        with torch.no_grad():
            target = self.teacher(waves, attention).last_hidden_state
        output = self.tokenizer(waves, attention)
        unit = F.normalize(self.tokenizer.quantize_layer(output.last_hidden_state).float(), dim=-1)
        codebook = self.tokenizer.codebook
        if not bool(self.codebook_ready):
            codebook.kmeans_init(unit.detach().flatten(0, 1))
            self.codebook_ready.fill_(True)
        codes = codebook.nearest(unit)
        chosen = codebook.lookup(codes)
        quantized = unit + (chosen - unit).detach()
        if self.training:
            codebook.update(unit.detach().flatten(0, 1), codes.flatten())
        every = torch.ones(codes.shape, dtype=torch.bool, device=codes.device)
        hidden = self.estimator(self.estimator_in(quantized.to(output.last_hidden_state.dtype)), every,
                                torch.arange(codes.shape[1], device=codes.device))[-1]
        estimate = self.estimator_out(hidden)
        cosine = F.cosine_similarity(estimate.float(), target.float(), dim=-1).mean()
        commitment = F.mse_loss(unit, chosen.detach())
        used = len(codes.unique())
        return PretrainOutput(loss=1 - cosine + commitment,
                              logs={"cosine": cosine.item(), "commitment": commitment.item(), "codes_used": used})


log = partial(say, "beats pretrain")


def load_beats(path: str, option: str, tokenizer: bool) -> BEATsEncoder:
    """A BEATs encoder (or tokenizer) from a run folder (its encoder/ or tokenizer/), a checkpoint
    folder or a model name (e.g. the embedded beats-tiny, beats-tiny-tokenizer)."""
    from zoo.hub import load_trained

    model = load_trained(path, option, ("tokenizer", "encoder"))
    if not isinstance(model, BEATsEncoder) or bool(model.config.codebook_size) != tokenizer:
        kind = "tokenizer" if tokenizer else "encoder"
        raise InputError(f"{option} {path!r} holds a {type(model).__name__} that is not a BEATs {kind}")
    return model


def encoder_config(args: argparse.Namespace, tokenizer: bool) -> BEATsConfig:
    """The config a fresh model of the stage starts from: --variant (default tiny) with the --set
    overrides; a tokenizer's codebook size and width come from --codebook-size and --codebook-dim
    (a --set of them is refused)."""
    overrides = parse_overrides(args.overrides)
    given = sorted({"codebook_size", "codebook_dim"} & set(overrides))
    if given:  # the options replaced them in the tokenizer stage without a word, and made the ssl stage's a tokenizer
        flags = " ".join(f"--{key.replace('_', '-')} N" for key in given)
        raise ConfigError(f"--set {given[0]}=...: the codebook is set by {flags}, in the tokenizer stage")
    fields = {**VARIANTS[args.variant or "tiny"], **overrides}
    if tokenizer:
        fields.update(codebook_size=args.codebook_size, codebook_dim=args.codebook_dim)
    return BEATsConfig.from_dict(fields)


def stage_model(args: argparse.Namespace, tokenizer: bool) -> BEATsEncoder:
    """The model the stage trains: a random init of --variant, or the --init weights, which
    must be of the stage's kind (an encoder for ssl, a tokenizer for tokenizer)."""
    model = encoder_to_pretrain(args, BEATsEncoder, lambda: BEATsEncoder(encoder_config(args, tokenizer)))
    if bool(model.config.codebook_size) != tokenizer:
        kind = "tokenizer" if tokenizer else "encoder"
        raise InputError(f"--init {args.init!r} is not a BEATs {kind}, which --stage {args.stage} trains")
    return model


def make_objective(args: argparse.Namespace) -> tuple[nn.Module, BEATsEncoder, str]:
    """The stage's objective, the model it trains, and the folder name it is saved under."""
    if args.stage == "tokenizer":
        if not args.teacher:
            raise ConfigError("--stage tokenizer distils a trained model; pass --teacher SSL_RUN")
        tokenizer = stage_model(args, tokenizer=True)
        teacher = load_beats(args.teacher, "--teacher", tokenizer=False)
        return TokenizerDistillation(tokenizer, teacher, args.head_layers), tokenizer, "tokenizer"
    if args.teacher:
        raise ConfigError("--teacher is for --stage tokenizer; the ssl stage takes --tokenizer")
    encoder = stage_model(args, tokenizer=False)
    if args.tokenizer == "random":
        labeler = RandomProjectionTokenizer(encoder.config.input_patch_size, args.codebook_size, args.codebook_dim,
                                            args.seed)
        num_labels = args.codebook_size
    else:
        trained = load_beats(args.tokenizer, "--tokenizer", tokenizer=True)
        labeler, num_labels = TrainedTokenizer(trained), trained.config.codebook_size
    return BEATsPretraining(encoder, labeler, num_labels, args.mask_ratio, args.head_layers), encoder, "encoder"


def collect_waves(folders: Sequence[str], exclude: Sequence[str], encoder: BEATsEncoder,
                  out: Path) -> RecordingFiles:
    """The run's recordings at the model's rate, decoded as batches reach them: the folders' when
    it begins, those it began with when it resumes, so that its seeded batches are the
    uninterrupted run's (`run_audio_files`)."""
    files = run_audio_files(out, folders, exclude)
    log(f"{len(files)} recordings in {', '.join(map(str, folders))}")
    return RecordingFiles(files, encoder.processor)


def run(args: argparse.Namespace) -> None:
    """`zoo pretrain beats`: one stage of BEATs' iterations; saves OUTPUT/encoder or OUTPUT/tokenizer."""
    if args.threads:
        torch.set_num_threads(args.threads)
    train_config = train_config_from_args(args)  # its settings checked before inputs.json is written
    torch.manual_seed(args.seed)
    objective, model, folder_name = make_objective(args)
    waves = collect_waves(args.data, args.exclude, model, Path(args.output))
    config = model.config
    column = config.input_patch_size * HOP
    max_columns = max(1, int(args.max_seconds * 16000 - config.min_samples) // column + 1)
    batches = CropBatches(waves, None, args.batch_size, max_columns, config.min_samples, column, args.seed)
    settings = command_settings(args)
    train_and_save(objective, batches, args.output, train_config, model, folder_name, settings, "beats pretrain")
