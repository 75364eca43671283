"""`zoo pretrain RECIPE`'s options come from torch-free modules beside each family's folder."""

import importlib
import subprocess
import sys

import pytest

from zoo import registry

RECIPES = sorted(registry.family_modules())


def test_pretrain_help_and_refused_options_import_no_torch():
    """`zoo pretrain RECIPE -h`, a misspelt option and the parser itself answer without importing the
    model: each imported its family's pretrain.py (model, transformers or PyG, torch) to add options,
    measured with /usr/bin/time: hubert -h 6.3 s of CPU and 889 MB, mert 5.7 s / 889 MB, graphmae
    5.1 s / 919 MB, paretognn 5.2 s / 920 MB, beats, gmml and tjepa 2.3-2.5 s / 654-725 MB; now 0.11-0.18 s
    and 20 MB."""
    code = ("import contextlib, io, sys\nfrom zoo.cli import build_parser, main\n"
            f"for recipe in {RECIPES!r}:\n"
            "    build_parser(recipe)\n"
            "    for argv in (['pretrain', recipe, '-h'], ['pretrain', recipe, '-o', 'out', '--stpes', '2']):\n"
            "        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):\n"
            "            try:\n                main(argv)\n            except SystemExit:\n                pass\n"
            "print(sorted(m for m in ('torch', 'numpy', 'pandas') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("module", ["speech.hubert", "audio.mert", "audio.beats", "vision.gmml"])
def test_variant_names_of_the_options_are_the_models(module):
    """`--variant`'s choices are named in the options module, which may not import the model's VARIANTS."""
    modality, family = module.split(".")
    options = importlib.import_module(f"modalities.{modality}.{family}_pretrain_options")
    assert options.VARIANT_NAMES == tuple(importlib.import_module(f"modalities.{module}.model").VARIANTS)
