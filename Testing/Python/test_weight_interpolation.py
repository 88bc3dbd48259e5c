"""Weight interpolation of a model and its own fine-tune (WiSE-FT) and the uniform soup of fine-tunes
of one model: exact arithmetic, provenance in the card, and refusal of networks from other basins."""

from __future__ import annotations

import pytest
import torch

from deepwml.model_files import ModelCard, load_model, read_card, save_model
from deepwml.training.weight_interpolation import averaged_state, interpolate_models, interpolated_state, soup_models
from deepwml.unet import UNet2D, UNetConfig


#: the contrast floor the test fine-tunes' cards carry (an average keeps it, as its threshold)
FLOOR = {"factor": 1.15, "mode": "voxel"}


def fine_tune_of(base_dir, out, shift: float = 0.5, initialised: bool = True):
    """A 'fine-tune' of the model in ``base_dir``: its weights shifted, its card naming the base."""
    base = load_model(base_dir)
    net = UNet2D(base.network.config)
    net.load_state_dict({k: (v + shift if v.is_floating_point() else v) for k, v in base.network.state_dict().items()})
    training = {"initialised_from": {"model": base.model_id, "weights_sha256": base.card["weights_sha256"]}}
    save_model(net, ModelCard("tiny-test", "0.0.2", net.config, training=training if initialised else {},
                              notes="shifted", threshold=0.7, contrast_floor=FLOOR), out)
    return out


def test_interpolated_state_is_the_weighted_mean():
    a = {"w": torch.tensor([0.0, 2.0]), "n": torch.tensor(3)}
    b = {"w": torch.tensor([4.0, 6.0]), "n": torch.tensor(9)}
    assert torch.equal(interpolated_state(a, b, 0.0)["w"], a["w"])
    assert torch.equal(interpolated_state(a, b, 1.0)["w"], b["w"])
    half = interpolated_state(a, b, 0.25)
    assert torch.allclose(half["w"], torch.tensor([1.0, 3.0])) and half["n"].item() == 9
    with pytest.raises(ValueError):
        interpolated_state(a, b, 1.5)
    with pytest.raises(ValueError):
        interpolated_state(a, {"w": b["w"]}, 0.5)


def test_interpolated_model_records_both_parents(tiny_model_dir, tmp_path):
    tuned = fine_tune_of(tiny_model_dir, tmp_path / "tuned")
    interpolate_models(tiny_model_dir, tuned, 0.5, tmp_path / "mid", "0.0.3")
    mid, base, ft = (load_model(p) for p in (tmp_path / "mid", tiny_model_dir, tuned))
    for key, value in mid.network.state_dict().items():
        if value.is_floating_point():
            assert torch.allclose(value, (base.network.state_dict()[key] + ft.network.state_dict()[key]) / 2)
    card, _ = read_card(tmp_path / "mid")
    record = card["training"]["weight_interpolation"]
    assert record["alpha"] == 0.5 and card["threshold"] == 0.7 and card["version"] == "0.0.3"
    assert card["contrast_floor"] == {**FLOOR, "inherited_from": ft.model_id}
    assert record["base"]["weights_sha256"] == base.card["weights_sha256"]
    assert record["fine_tune"]["weights_sha256"] == ft.card["weights_sha256"]


def test_a_model_that_is_not_a_fine_tune_of_the_base_is_refused(tiny_model_dir, tmp_path):
    unrelated = fine_tune_of(tiny_model_dir, tmp_path / "unrelated", initialised=False)
    with pytest.raises(ValueError, match="not fine-tuned from"):
        interpolate_models(tiny_model_dir, unrelated, 0.5, tmp_path / "mid", "0.0.3")
    assert not (tmp_path / "mid").exists()  # nothing written
    torch.manual_seed(1)
    wider = UNet2D(UNetConfig(base_channels=8))
    save_model(wider, ModelCard("wide", "0.1", wider.config), tmp_path / "wide")
    with pytest.raises(ValueError, match="architecture differs"):
        interpolate_models(tiny_model_dir, tmp_path / "wide", 0.5, tmp_path / "mid", "0.0.3")


def test_averaged_state_is_the_weighted_sum():
    states = [{"w": torch.tensor([0.0, 3.0]), "n": torch.tensor(1)}, {"w": torch.tensor([3.0, 6.0]), "n": torch.tensor(2)},
              {"w": torch.tensor([6.0, 0.0]), "n": torch.tensor(5)}]
    mean = averaged_state(states, [1 / 3] * 3)
    assert torch.allclose(mean["w"], torch.tensor([3.0, 3.0])) and mean["n"].item() == 5
    with pytest.raises(ValueError, match="one weight each"):
        averaged_state(states[:1], [1.0])
    with pytest.raises(ValueError, match="different tensors"):
        averaged_state([states[0], {"w": states[1]["w"]}], [0.5, 0.5])


def test_soup_of_two_fine_tunes_is_their_mean_and_names_both(tiny_model_dir, tmp_path):
    first = fine_tune_of(tiny_model_dir, tmp_path / "first", shift=0.5)
    second = fine_tune_of(tiny_model_dir, tmp_path / "second", shift=-0.25)
    soup_models([first, second], tmp_path / "soup", "0.0.4")
    soup, a, b, base = (load_model(p) for p in (tmp_path / "soup", first, second, tiny_model_dir))
    for key, value in soup.network.state_dict().items():
        if value.is_floating_point():
            assert torch.allclose(value, base.network.state_dict()[key] + 0.125, atol=1e-6)
            assert torch.allclose(value, (a.network.state_dict()[key] + b.network.state_dict()[key]) / 2, atol=1e-6)
    card, _ = read_card(tmp_path / "soup")
    record = card["training"]["model_soup"]
    assert [i["weights_sha256"] for i in record["ingredients"]] == [a.card["weights_sha256"], b.card["weights_sha256"]]
    assert record["initialised_from"]["weights_sha256"] == base.card["weights_sha256"]
    assert card["version"] == "0.0.4" and card["threshold"] == 0.7
    assert card["contrast_floor"] == {**FLOOR, "inherited_from": a.model_id}


def test_a_soup_refuses_models_of_different_parents(tiny_model_dir, tmp_path):
    tuned = fine_tune_of(tiny_model_dir, tmp_path / "tuned")
    grandchild = fine_tune_of(tuned, tmp_path / "grandchild")  # fine-tuned from the fine-tune, not the base
    with pytest.raises(ValueError, match="not fine-tuned from the weights"):
        soup_models([tuned, grandchild], tmp_path / "soup", "0.0.4")
    unrelated = fine_tune_of(tiny_model_dir, tmp_path / "unrelated", initialised=False)
    with pytest.raises(ValueError, match="names no model"):
        soup_models([unrelated, tuned], tmp_path / "soup", "0.0.4")
    with pytest.raises(ValueError, match="two or more"):
        soup_models([tuned], tmp_path / "soup", "0.0.4")
    assert not (tmp_path / "soup").exists()  # nothing written
