"""Model files are verified before use; nothing is unpickled."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from deepwml.errors import ModelFileError
from deepwml.model_files import WEIGHTS_NAME, load_model, read_card, sha256_of


def copy_model(src, tmp_path):
    dst = tmp_path / "model"
    shutil.copytree(src, dst)
    return dst


def edit_card(model, edit) -> None:
    """Apply ``edit(card)`` to a copied model's card in place."""
    card = json.loads((model / "model.json").read_text(encoding="utf-8"))
    edit(card)
    (model / "model.json").write_text(json.dumps(card), encoding="utf-8")


def test_round_trip_gives_identical_weights(tiny_model_dir):
    a = load_model(tiny_model_dir)
    b = load_model(tiny_model_dir / "model.json")
    for (ka, va), (kb, vb) in zip(a.network.state_dict().items(), b.network.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)
    assert a.card["provenance"]["git_commit"]
    assert a.card["weights_sha256"] == sha256_of(tiny_model_dir / WEIGHTS_NAME)


def test_tampered_weights_are_refused(tiny_model_dir, tmp_path):
    model = copy_model(tiny_model_dir, tmp_path)
    data = bytearray((model / WEIGHTS_NAME).read_bytes())
    data[-10] ^= 0xFF
    (model / WEIGHTS_NAME).write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="SHA-256 does not match"):
        load_model(model)


def test_truncated_weights_are_refused(tiny_model_dir, tmp_path):
    model = copy_model(tiny_model_dir, tmp_path)
    (model / WEIGHTS_NAME).write_bytes((model / WEIGHTS_NAME).read_bytes()[:1000])
    with pytest.raises(ModelFileError, match="truncated"):
        load_model(model)


def test_wrong_architecture_is_refused_even_with_matching_checksum(tiny_model_dir, tmp_path):
    model = copy_model(tiny_model_dir, tmp_path)
    edit_card(model, lambda card: card["architecture"].update(base_channels=8))
    with pytest.raises(ModelFileError, match="do not fit the architecture"):
        load_model(model)


def test_garbage_with_matching_checksum_is_refused(tiny_model_dir, tmp_path):
    model = copy_model(tiny_model_dir, tmp_path)
    (model / WEIGHTS_NAME).write_bytes(b"\x80\x04 pickle-looking bytes" * 10)
    edit_card(model, lambda card: card.update(weights_sha256=sha256_of(model / WEIGHTS_NAME)))
    with pytest.raises(ModelFileError, match="cannot be read as model weights"):
        load_model(model)


@pytest.mark.parametrize("content,problem", [("{not json", "not valid JSON"),
                                             ('{"format": "other"}', "not a DeepWML model card")])
def test_bad_cards_are_refused(tmp_path, content, problem):
    (tmp_path / "model.json").write_text(content, encoding="utf-8")
    with pytest.raises(ModelFileError, match=problem):
        read_card(tmp_path)


def test_missing_model_is_refused(tmp_path):
    with pytest.raises(ModelFileError, match="model card not found"):
        load_model(tmp_path / "nothing")


def test_model_from_another_preprocessing_version_is_refused(tiny_model_dir, tmp_path):
    model = copy_model(tiny_model_dir, tmp_path)
    edit_card(model, lambda card: card["preprocessing"].update(version=1))
    with pytest.raises(ModelFileError, match="preprocessing version 1"):
        load_model(model)


def test_the_word_bundled_names_the_shipped_model_everywhere_a_model_is_loaded(tmp_path, monkeypatch):
    """``--model bundled`` (segment, evaluate, sanity, cohort) means what ``train --init bundled``
    means, not a folder called "bundled" in the working directory."""
    from deepwml.model_files import DEFAULT_MODEL_DIR

    monkeypatch.chdir(tmp_path)
    (tmp_path / "bundled").mkdir()  # an empty folder of that name must not be read instead
    word, default = load_model("bundled", framework="numpy"), load_model(None, framework="numpy")
    assert word.path == default.path and word.card["weights_sha256"] == read_card(DEFAULT_MODEL_DIR)[0]["weights_sha256"]
