"""hub_configs drive list_models/info/load; families are imported only when needed."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import zoo
from zoo import registry
from zoo.errors import ConfigError, UnknownModelError


def test_list_models_filters_by_pattern_and_modality():
    everything = zoo.list_models()
    assert "hubert-base-ls960" in everything and everything == sorted(everything)
    assert zoo.list_models("hubert-*") == [name for name in everything if name.startswith("hubert-")]
    assert set(zoo.list_models(modality="speech")) >= {"hubert-base-ls960", "hubert-large-ll60k"}
    assert zoo.list_models(modality="vision") == [n for n in everything if registry.get_entry(n).modality == "vision"]
    with pytest.raises(ConfigError, match="modality 'speach'"):
        zoo.list_models(modality="speach")
    published = zoo.list_models("graphmae-*", pretrained=True)
    assert published == ["graphmae-cora", "graphmae-mutag"]  # the other graphmae names are recipes
    assert set(zoo.list_models("graphmae-*")) - set(published) >= {"graphmae-nci1", "graphmae-pubmed"}


def test_a_list_of_patterns_lists_the_names_any_of_them_fits():
    """timm's `list_models(["vit_*", "deit_*"])`; here it was "'list' object has no attribute 'lower'"."""
    assert zoo.list_models(["hubert-*", "mert-*"]) == sorted(zoo.list_models("hubert-*") + zoo.list_models("mert-*"))
    assert zoo.list_models(("beats",), pretrained=True) == zoo.list_models("beats", pretrained=True)
    assert zoo.list_models([]) == zoo.list_models()
    with pytest.raises(ConfigError, match=r"pattern=3; give a name pattern such as 'hubert-\*', or a list of them"):
        zoo.list_models(3)


def test_a_pattern_without_wildcards_lists_the_names_holding_it():
    """Was nothing: `zoo list beats` matched a model named exactly "beats"."""
    everything = zoo.list_models()
    assert zoo.list_models("beats") == [name for name in everything if "beats" in name] != []
    assert zoo.list_models("iter3-plus") == zoo.list_models("*iter3-plus*") != []
    assert zoo.list_models("mert-tiny") == ["mert-tiny"]
    assert zoo.list_models("mert-v[01]") == ["mert-v0"]  # a wildcard keeps fnmatch's whole-name match
    assert zoo.list_models("MERT") == zoo.list_models("mert") != []  # was [], as the Hub spells MERT
    assert zoo.list_models("HUBERT-*") == zoo.list_models("hubert-*") != []


def test_info_returns_the_hub_config():
    info = zoo.info("hubert-large-ll60k")
    assert info["repo_id"] == "facebook/hubert-large-ll60k" and info["preprocessing"]["do_normalize"] is True
    with pytest.raises(UnknownModelError, match="unknown model 'hubert-huge'"):
        zoo.info("hubert-huge")
    with pytest.raises(UnknownModelError, match="did you mean 'mert-v1-95m'"):
        zoo.load("MERT-v1-95M")
    with pytest.raises(UnknownModelError, match="'gmml-vit-small-patch16': it is an architecture without weights "
                                                 "\\(pretrain it with `zoo pretrain gmml --variant vit-small-patch16 "
                                                 "-o OUT`, or build it with fresh weights with "
                                                 "zoo.load\\('gmml-vit-small-patch16', pretrained=False\\)\\)"):
        zoo.load("gmml-vit-small-patch16")


def test_an_architecture_name_builds_with_fresh_weights_as_timms_create_model():
    """zoo.load(size, pretrained=False) was refused as an unknown model whose hint gave its config,
    and no document said how to build a model from that; timm's create_model(name, pretrained=False)
    builds it."""
    torch.manual_seed(0)
    encoder = zoo.load("gmml-vit-small-patch16", pretrained=False)
    assert encoder.config == registry.architecture_config("gmml-vit-small-patch16") and encoder.embed_dim == 384
    assert encoder.processor.to_dict()["crop_size"] == 224  # the family's default preprocessing
    torch.manual_seed(0)
    assert torch.equal(zoo.load("gmml-vit-small-patch16", pretrained=False).state_dict()["backbone.cls_token"],
                       encoder.state_dict()["backbone.cls_token"])  # seeded as the docstring says
    with pytest.raises(UnknownModelError, match="family 'gmml' has no size 'vit-huge'"):
        registry.architecture_config("gmml-vit-huge")
    with pytest.raises(UnknownModelError, match="unknown model 'gmml-vit-huge'"):
        zoo.load("gmml-vit-huge", pretrained=False)


@pytest.mark.parametrize("name", zoo.list_models())
def test_every_hub_config_builds_its_model_with_the_stated_size(name):
    """The architecture in each hub_config is complete, valid, and has `params` parameters."""
    entry = registry.get_entry(name)
    family = registry.get_family(entry.family)
    config = family.encoder_class.config_class.from_dict(entry.architecture)
    with torch.device("meta"):
        encoder = family.encoder_class(config, family.encoder_class.processor_class(**entry.preprocessing))
    assert sum(p.numel() for p in encoder.parameters()) == entry.params
    assert entry.license and entry.citation and entry.source


@pytest.mark.parametrize("name", zoo.list_models())
def test_every_licence_is_a_hub_identifier_and_its_card_says_the_same(name):
    """`zoo info` and the card's metadata show one licence, as the Hub takes it: an audit found
    "other" without a license_name, and "unverified (...)" sentences, in both places."""
    from huggingface_hub import ModelCard

    from zoo.run_cards import LICENCE_ID

    licence = registry.get_entry(name).license
    assert LICENCE_ID.fullmatch(licence), licence
    card = Path(__file__).parents[1] / "model_cards" / f"{name}.md"
    assert ModelCard.load(card).data.license == licence


@pytest.mark.parametrize("licence", ["unknown", "MIT licence", "-mit"])
def test_a_licence_that_names_none_or_is_not_an_identifier_is_refused(licence):
    """`zoo convert --license unknown` wrote "license: unknown" into the card: it names no terms,
    where the card without one says that the upstream checkpoint's apply."""
    from zoo.run_cards import check_licence

    with pytest.raises(ConfigError, match=re.escape(f"--license {licence!r}; give the upstream")):
        check_licence(licence)
    assert check_licence("cc-by-nc-4.0") == "cc-by-nc-4.0"


def test_hub_configs_validate_their_keys(tmp_path):
    path = tmp_path / "bad-entry.json"
    path.write_text(json.dumps({"name": "bad-entry", "family": "hubert", "modality": "speech",
                                "description": "x", "repo_id": "a/b", "weights": "?"}))
    with pytest.raises(ConfigError, match=r"unknown keys \['weights'\]"):
        zoo.add_model_config(path)
    path.write_text(json.dumps({"name": "other", "family": "hubert", "modality": "speech", "description": "x"}))
    with pytest.raises(ConfigError, match="must equal the file stem"):
        zoo.add_model_config(path)
    with pytest.raises(ConfigError, match="missing.json does not exist; check the path"):
        zoo.add_model_config(tmp_path / "missing.json")
    path.write_bytes(b"\xff\xfe not json")
    with pytest.raises(ConfigError, match="bad-entry.json is not valid JSON"):
        zoo.add_model_config(path)
    good = {"name": "bad-entry", "family": "hubert", "modality": "audio", "description": "x", "repo_id": "a/b"}
    for change, refused in [  # each was taken, or a TypeError or AttributeError naming no file, later or at once
            ({"description": None}, r"bad-entry.json lacks the keys \['description'\]; see ModelEntry"),
            ({"params": "5"}, "params is '5', not an integer or null"),
            ({"params": True}, "params is True, not an integer or null"),
            ({"embedded": "yes"}, "embedded is 'yes', not true or false"),
            ({"metrics": [1]}, r"metrics is \[1\], not an object"),
            ({"architecture": []}, r"architecture is \[\], not an object"),
            ({"description": 3}, "description is 3, not a string"),
            ({"family": ["hubert"]}, r"family is \['hubert'\], not a string"),
            ({"family": "wav2vec9"}, r"family 'wav2vec9' is not one of \['beats', "),
    ]:
        entry = {key: value for key, value in {**good, **change}.items() if value is not None}
        path.write_text(json.dumps(entry))
        with pytest.raises(ConfigError, match=refused):
            zoo.add_model_config(path)
    path.write_text(json.dumps(good))
    assert zoo.add_model_config(path).repo_id == "a/b"
    path.write_text(json.dumps({**good, "architecture": registry.get_entry("hubert-tiny-fsdd").architecture,
                                "preprocessing": {"sampling_rate": 16000, "bogus": 1}}))
    zoo.add_model_config(path)
    with pytest.raises(ConfigError, match=r"hub_config 'bad-entry': preprocessing has unknown keys \['bogus'\]"):
        zoo.load("bad-entry", pretrained=False)  # was a TypeError from the processor's constructor


@pytest.mark.parametrize("upstream, refused", [
    ({"url": "https://h/x.pt", "format": "official", "sha256": "/tmp/victim/made/by/zoo"},
     r"sha256 '/tmp/victim/made/by/zoo' is not 64 lower-case hex digits"),
    ({"url": "https://h/x.pt", "format": "official", "sha256": "../" * 22},
     r"sha256 '\.\./.*' is not 64 lower-case hex"),
    ({"url": "http://h/x.pt", "format": "official", "sha256": None}, r"url 'http://h/x.pt' must be an https://"),
    ({"url": "https://h/..", "format": "official", "sha256": None},
     r"url 'https://h/\.\.' must be an https:// address ending in a file name"),
    ({"url": "https://h/x.pt", "format": 3, "sha256": None}, "format 3 is not a converter name"),
    ({"repo_id": "a/b", "filename": "../../../../etc/passwd", "format": "official", "sha256": None},
     r"filename '\.\./.*' must be a path inside its repo"),
    ("https://h/x.pt", "is a str; give an object"),
])
def test_an_upstream_entry_that_would_download_outside_the_cache_is_refused(tmp_path, upstream, refused):
    """A hub_config's upstream sha256 names the cache folder a download goes to: a path there wrote
    the file outside the zoo's cache, made its folders and left it after the digest check failed."""
    path = tmp_path / "evil-beats.json"
    path.write_text(json.dumps({"name": "evil-beats", "family": "beats", "modality": "audio", "description": "x",
                                "format": "official", "upstream": upstream}))
    with pytest.raises(ConfigError, match=rf"hub_config 'evil-beats': upstream {refused}"):
        zoo.add_model_config(path)
    assert not (tmp_path / "victim").exists()


def test_unknown_family_is_named():
    with pytest.raises(UnknownModelError, match="unknown family 'wav2vec9'.*hubert"):
        registry.get_family("wav2vec9")


def test_importing_zoo_stays_light():
    """`import zoo` and listing models import no family, torchaudio nor torch_geometric."""
    code = ("import sys, zoo; zoo.list_models(); zoo.info('hubert-base-ls960'); "
            "print(sorted(m for m in ('torchaudio', 'torch_geometric', 'modalities.speech.hubert') "
            "if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("name", zoo.list_models())
def test_every_checkpoint_has_a_model_card(name):
    from zoo.cards import model_card_text

    card = model_card_text(name)
    assert card is not None, f"model_cards/{name}.md is missing"
    assert card.startswith("---\n") and "library_name: ssl-zoo" in card and f"# {name}" in card


@pytest.mark.parametrize("family", sorted(registry.family_modules()))
def test_every_family_config_checks_its_field_types(family):
    """A `--set depth=x` or a hand-edited config.json is named at the field, for every family;
    JSON's ints stand for floats and its lists for tuples."""
    config_class = registry.get_family(family).encoder_class.config_class
    entry = next(registry.get_entry(name) for name in zoo.list_models() if registry.get_entry(name).family == family
                 and registry.get_entry(name).architecture)
    defaults = config_class.from_dict(entry.architecture)
    int_field = next(name for name, value in vars(defaults).items() if type(value) is int)
    with pytest.raises(ConfigError, match=rf"{config_class.__name__}: {int_field}='x' is not of its type, int"):
        config_class.from_dict({**defaults.to_dict(), int_field: "x"})
    with pytest.raises(ConfigError, match=rf"{int_field}=True is not of its type"):
        config_class.from_dict({**defaults.to_dict(), int_field: True})
    assert config_class.from_dict(json.loads(json.dumps(defaults.to_dict()))) == defaults
    float_field = next((name for name, value in vars(defaults).items() if type(value) is float and "eps" not in name),
                       None)
    if float_field is not None:
        assert getattr(config_class.from_dict({**defaults.to_dict(), float_field: 0}), float_field) == 0


@pytest.mark.parametrize("family", sorted(registry.family_modules()))
def test_every_family_config_refuses_negative_sizes_and_dropout_outside_0_and_1(family):
    """`num_heads=-1` passed the type check and `hidden_size % num_heads == 0`, and a checkpoint
    converted with it reloaded, then failed as a tensor of negative shape when first run."""
    config_class = registry.get_family(family).encoder_class.config_class
    entry = next(registry.get_entry(name) for name in zoo.list_models() if registry.get_entry(name).family == family
                 and registry.get_entry(name).architecture)
    defaults = config_class.from_dict(entry.architecture).to_dict()
    int_field = next(name for name, value in defaults.items() if type(value) is int and value > 0)
    with pytest.raises(ConfigError, match=rf"{int_field}=-{defaults[int_field]}; sizes and counts are never negative"):
        config_class.from_dict({**defaults, int_field: -defaults[int_field]})
    for rate_field in (name for name, value in defaults.items() if "drop" in name and type(value) is float):
        with pytest.raises(ConfigError, match=rf"{rate_field}=5.0; a dropout rate lies in \[0, 1\)"):
            config_class.from_dict({**defaults, rate_field: 5.0})


@pytest.mark.parametrize("family", sorted(registry.family_modules()))
def test_every_family_config_refuses_nan_a_non_positive_epsilon_and_no_heads(family):
    """A checkpoint's config.json with `layer_norm_eps` NaN loaded, and every embedding it gave was
    NaN (exit 0); -1.0 gave other embeddings silently; `num_attention_heads` 0 or `hidden_size` 0
    failed as a ZeroDivisionError while the model was built, and a 0 in HuBERT's conv_dim, BEATs'
    conv_pos_groups or num_buckets (among others) as a ZeroDivisionError, a "math domain error" or a
    RuntimeError of torch's at the first embed."""
    config_class = registry.get_family(family).encoder_class.config_class
    entry = next(registry.get_entry(name) for name in zoo.list_models() if registry.get_entry(name).family == family
                 and registry.get_entry(name).architecture)
    defaults = config_class.from_dict(entry.architecture).to_dict()
    for name, value in defaults.items():
        if type(value) is float:
            with pytest.raises(ConfigError, match=rf"{name}=nan; settings are finite numbers"):
                config_class.from_dict({**defaults, name: float("nan")})
        if "eps" in name:
            with pytest.raises(ConfigError, match=rf"{name}=-1.0; an epsilon is a small positive number"):
                config_class.from_dict({**defaults, name: -1.0})
        if name.endswith("heads") or name in config_class.positive_fields:
            zero = [0, *value[1:]] if isinstance(value, (list, tuple)) else 0
            with pytest.raises(ConfigError, match=rf"{name}=[(\[]?0[^;]*; a model has at least one "
                                                  "attention head, and widths, kernels, strides and groups of at "
                                                  "least 1"):
                config_class.from_dict({**defaults, name: zero})
    assert set(config_class.positive_fields) <= set(defaults)
