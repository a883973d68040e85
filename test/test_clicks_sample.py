"""The committed test/input/lesion-clicks.json is the simulator's output for the sample case."""
import json

from autopet_common.click_io import read_clicks_json
from autopet_common.image_io import read_image
from clicks.make_sample_clicks import SAMPLE_CLICKS, SAMPLE_LABEL, sample_clicks


def test_committed_sample_clicks_match_the_simulator():
    committed = read_clicks_json(SAMPLE_CLICKS, missing_ok=False)
    obj = json.loads(SAMPLE_CLICKS.read_text())
    assert obj["type"] == "Multiple points" and obj["version"] == {"major": 1, "minor": 0}
    assert len(committed["tumor"]) == 10 and len(committed["background"]) == 10
    assert committed == sample_clicks()
    label, _ = read_image(SAMPLE_LABEL)
    assert all(label[tuple(p)] for p in committed["tumor"])
    assert not any(label[tuple(p)] for p in committed["background"])
