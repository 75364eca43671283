"""`zoo pretrain RECIPE`'s options come from torch-free modules beside each family's folder."""

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


@pytest.mark.parametrize("family", RECIPES)
def test_variant_names_and_convert_formats_of_the_options_are_the_models(family):
    """`--variant`'s choices, `zoo list --architectures` and `zoo convert -h` are named in the options
    module, which may not import the model's VARIANTS and converters; a family without names none."""
    assert registry.variant_names(family) == tuple(registry.get_family(family).variants)
    assert [name.split(" ")[0] for name in registry.convert_formats(family)] == list(
        registry.get_family(family).converters)


def test_a_mistyped_name_and_the_architectures_are_answered_without_torch():
    """A typo's hint (is it an architecture?) and `zoo list --architectures` imported every family
    (transformers and torch_geometric with them): `zoo info hubert-tiny-fsd` took 15.5 s, now 5.6 s
    (torch alone, for the Hub code that reads a name that is no zoo name), `zoo list --architectures`
    8.0 s, now 0.3 s."""
    code = ("import contextlib, io, sys\nfrom zoo.cli import main\n"
            "for argv in (['list', '--architectures'], ['info', 'hubert-tiny-fsd'],"
            " ['info', 'gmml-vit-small-patch16']):\n"
            "    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):\n"
            "        main(argv)\n"
            "    print(sorted(m for m in ('torch', 'transformers', 'torch_geometric', *(f'modalities.{m}' for m in "
            "('speech.hubert', 'audio.mert', 'audio.beats', 'vision.gmml', 'graphs.graphmae', 'graphs.paretognn', "
            "'tabular.tjepa'))) if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split("\n")[:3] == ["[]", "['torch']", "['torch']"]


@pytest.mark.parametrize("recipe, source", [("hubert", "HuBERT's 32k of 400k steps"), ("mert", "MERT's 32k of 400k"),
                                            ("beats", "HuBERT's, as BEATs' pretraining code is unreleased"),
                                            ("gmml", "upstream's 10 of 800 epochs")])
def test_each_recipe_says_whose_warmup_its_default_is(recipe, source, capsys):
    """A default source credited HuBERT in `zoo pretrain mert -h` and `beats -h` too."""
    from zoo.cli import main

    with pytest.raises(SystemExit):
        main(["pretrain", recipe, "-h"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert f"linear warmup steps (default: {'1.25' if recipe == 'gmml' else '8'}% of --steps, {source}" in help_text
