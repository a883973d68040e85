"""The versioned click configuration: one record for trainer, predictor, recipe and model card."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from Task1.click_config import CLICK_CONFIG_FILE, CLICK_CONFIG_VERSION, ClickConfig, ClickConfigError

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "models" / "task1_phantom"


def test_round_trip_of_the_current_version():
    config = ClickConfig(trainer="autoPETTrainerClicks_cpu", encoding="gaussian", encoding_size=3.0,
                         center_offset=2, edge_offset=1)
    record = config.to_dict()
    assert record["version"] == CLICK_CONFIG_VERSION == 2
    assert ClickConfig.from_dict(json.loads(json.dumps(record))) == config


def test_the_shipped_models_version_1_record_is_read():
    record = json.loads((SHIPPED / CLICK_CONFIG_FILE).read_text())
    assert "version" not in record  # written before the configuration was versioned
    config = ClickConfig.from_dict(record, source=str(SHIPPED))
    assert config.version == 1 and config.trainer == "autoPETTrainerClicks_cpu"
    assert config.click_order == ("tumor", "background") and config.n_click_channels == 2
    # what the trainers of that time did: no offsets, symmetric if set, the challenge's quirk
    assert (config.center_offset, config.edge_offset, config.symmetric_offsets,
            config.background_in_component) == (0, 0, True, False)


@pytest.mark.parametrize("change, message", [
    ({"colour": "red"}, "unknown key(s) colour"),
    ({"version": 3}, "newer than this toolkit's"),
    ({"version": "2"}, "version must be a whole number"),
    ({"encoding": "disk"}, "encoding must be one of"),
    ({"encoding_size": -1}, "encoding_size must be a positive number"),
    ({"encoding_size": float("nan")}, "encoding_size must be a positive number"),
    ({"click_order": ["tumor", "tumor"]}, "click_order must list distinct kinds"),
    ({"n_click_channels": 3}, "does not have n_click_channels=3"),
    ({"pet_channel": -1}, "pet_channel must be a whole number"),
    ({"symmetric_offsets": "yes"}, "symmetric_offsets must be true or false"),
])
def test_bad_records_are_refused_naming_the_source(change, message):
    record = {**ClickConfig(trainer="autoPETTrainerClicks").to_dict(), **change}
    with pytest.raises(ClickConfigError) as caught:
        ClickConfig.from_dict(record, source="model X")
    assert str(caught.value).startswith("model X: ") and message in str(caught.value)


def test_version_1_records_may_not_carry_version_2_keys():
    record = json.loads((SHIPPED / CLICK_CONFIG_FILE).read_text())
    with pytest.raises(ClickConfigError, match="unknown key"):
        ClickConfig.from_dict({**record, "center_offset": 2})
    with pytest.raises(ClickConfigError, match="expected a JSON object"):
        ClickConfig.from_dict(["not", "a", "record"])
    with pytest.raises(ClickConfigError, match="no 'trainer'"):
        ClickConfig.from_dict({"version": 2})


def test_the_trainer_writes_the_current_version_from_its_attributes():
    from Task1.trainers.autoPETClickTrainers import autoPETTrainerClicks_perturbed

    trainer = autoPETTrainerClicks_perturbed.__new__(autoPETTrainerClicks_perturbed)  # no nnU-Net set-up
    trainer.pet_channel = 1
    config = ClickConfig.from_dict(trainer.click_config())
    assert config.version == CLICK_CONFIG_VERSION and config.trainer == "autoPETTrainerClicks_perturbed"
    assert (config.center_offset, config.edge_offset, config.symmetric_offsets) == (2, 2, True)
    settings = autoPETTrainerClicks_perturbed.click_draw_settings()
    assert (settings.center_offset, settings.edge_offset, settings.symmetric_offsets) == (2, 2, True)


def test_the_predictor_refuses_a_model_from_a_newer_toolkit(tmp_path):
    import shutil

    from Task1.predict import Task1Predictor

    model = tmp_path / "model"
    shutil.copytree(SHIPPED, model)
    import torch

    checkpoint_path = model / "fold_0" / "checkpoint_final.pth"
    checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=False)
    checkpoint["autopet_click_config"] = {**checkpoint["autopet_click_config"], "version": 9}
    torch.save(checkpoint, checkpoint_path)
    with pytest.raises(ClickConfigError) as caught:
        Task1Predictor(model, device="cpu")
    assert str(model) in str(caught.value) and "version 9 is newer" in str(caught.value)
