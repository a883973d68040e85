"""Click JSON formats: round trips, tolerant empties, clear errors naming the file."""
import json

import numpy as np
import pytest

from autopet_common.click_io import (clicks_at_step, clicks_to_gc_format, empty_clicks,
                                     gc_format_to_clicks, read_clicks_json, read_task2_points,
                                     split_clicks_inside, task2_points_to_json, write_clicks_json,
                                     write_task2_points)
from autopet_common.errors import ClickFormatError, InputError

CLICKS = {"tumor": [[1, 2, 3], [4, 5, 6]], "background": [[7, 8, 9]]}


def test_gc_format_is_tumor_first_then_background():
    gc = clicks_to_gc_format({"background": [[7, 8, 9]], "tumor": [[1, 2, 3], [4, 5, 6]]})
    assert gc["version"] == {"major": 1, "minor": 0}
    assert gc["type"] == "Multiple points"
    assert [p["name"] for p in gc["points"]] == ["tumor", "tumor", "background"]
    assert [p["point"] for p in gc["points"]] == [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
    assert gc_format_to_clicks(gc) == CLICKS


def test_numpy_points_become_plain_json():
    clicks = {"tumor": [np.array([1, 2, 3], dtype=np.int64)], "background": []}
    gc = clicks_to_gc_format(clicks)
    assert json.loads(json.dumps(gc))["points"][0]["point"] == [1, 2, 3]


@pytest.mark.parametrize("gc", [False, True])
def test_write_read_round_trip(tmp_path, gc):
    path = tmp_path / "c.json"
    write_clicks_json(path, CLICKS, gc_format=gc)
    obj = json.loads(path.read_text())
    assert ("points" in obj) == gc
    assert read_clicks_json(path) == CLICKS
    assert [p.name for p in tmp_path.iterdir()] == ["c.json"]  # no temporary file left


@pytest.mark.parametrize("text", ["", "  \n", "{}", '{"points": []}', '{"tumor": [], "background": []}',
                                  '{"version": {"major": 1, "minor": 0}, "type": "Multiple points", "points": []}'])
def test_empty_inputs_give_empty_clicks(tmp_path, text):
    path = tmp_path / "c.json"
    path.write_text(text)
    assert read_clicks_json(path) == empty_clicks()


def test_missing_file(tmp_path):
    assert read_clicks_json(tmp_path / "absent.json") == empty_clicks()
    with pytest.raises(ClickFormatError, match="absent.json"):
        read_clicks_json(tmp_path / "absent.json", missing_ok=False)


@pytest.mark.parametrize("text, message", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "expected a JSON object"),
    ('{"points": {"a": 1}}', "must be a list"),
    ('{"points": [{"point": [1, 2, 3], "name": "lesion"}]}', "unknown name 'lesion'"),
    ('{"points": [{"point": [1, 2], "name": "tumor"}]}', "3 numbers"),
    ('{"points": [{"point": [1, "a", 3], "name": "tumor"}]}', "finite numbers"),
    ('{"points": [{"point": [1, true, 3], "name": "tumor"}]}', "finite numbers"),
    ('{"points": [{"point": [1, NaN, 3], "name": "tumor"}]}', "finite numbers"),
    ('{"points": [[1, 2, 3]]}', "must be an object"),
    ('{"tumor": [[1, 2, 3, 4]]}', "3 numbers"),
    ('{"tumour": [[1, 2, 3]]}', "unknown key"),
    ('{"tumor": 5}', "list of points"),
])
def test_malformed_files_name_the_file(tmp_path, text, message):
    path = tmp_path / "bad-clicks.json"
    path.write_text(text)
    with pytest.raises(ClickFormatError, match=message) as info:
        read_clicks_json(path)
    assert "bad-clicks.json" in str(info.value)
    assert isinstance(info.value, InputError)


def test_clicks_at_step():
    clicks = {"tumor": [[i, 0, 0] for i in range(10)], "background": [[0, i, 0] for i in range(10)]}
    assert clicks_at_step(clicks, 0) == empty_clicks()
    step3 = clicks_at_step(clicks, 3)
    assert step3 == {"tumor": [[0, 0, 0], [1, 0, 0], [2, 0, 0]], "background": [[0, 0, 0], [0, 1, 0], [0, 2, 0]]}
    assert clicks_at_step(clicks, 10) == clicks
    assert clicks_at_step({"tumor": [[1, 1, 1]], "background": []}, 5) == {"tumor": [[1, 1, 1]], "background": []}
    with pytest.raises(ValueError):
        clicks_at_step(clicks, -1)


def test_split_clicks_inside_rounds_and_separates():
    clicks = {"tumor": [[1.4, 2.5, 0.0], [10, 0, 0], [-1, 0, 0]], "background": [[9.49, 9.5, 4.6]]}
    inside, outside = split_clicks_inside(clicks, (10, 10, 5))
    assert inside == {"tumor": [[1, 3, 0]], "background": []}
    assert outside == [("tumor", [10, 0, 0]), ("tumor", [-1, 0, 0]), ("background", [9, 10, 5])]
    assert all(isinstance(v, int) for v in inside["tumor"][0])


def test_task2_points_round_trip_and_names(tmp_path):
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"name": "Points of interest", "points": [
        {"name": "3", "point": [1.5, 2.25, 3.0]}, {"name": "Lesion 1", "point": [4, 5, 6]}]}))
    points = read_task2_points(path)
    assert points == {3: (1.5, 2.25, 3.0), 1: (4.0, 5.0, 6.0)}
    obj = task2_points_to_json(points)
    assert obj["name"] == "Points of interest"
    assert [p["name"] for p in obj["points"]] == ["1", "3"]
    write_task2_points(tmp_path / "q.json", points)
    assert read_task2_points(tmp_path / "q.json") == points


def test_task2_empty_and_malformed(tmp_path):
    empty = tmp_path / "empty.json"
    empty.write_text('{"name": "Points of interest", "points": []}')
    assert read_task2_points(empty) == {}
    for text, message in [('{"points": [{"name": "tumor", "point": [1, 2, 3]}]}', "not a lesion id"),
                          ('{"points": [{"name": "1", "point": [1, 2]}]}', "3 numbers"),
                          ('{"points": [{"name": "1", "point": [1, 2, 3]}, {"name": "Lesion 1", "point": [1, 2, 3]}]}', "more than once"),
                          ("{oops", "not valid JSON"),
                          ('{"name": "x"}', "'points' list")]:
        bad = tmp_path / "bad-points.json"
        bad.write_text(text)
        with pytest.raises(ClickFormatError, match=message) as info:
            read_task2_points(bad)
        assert "bad-points.json" in str(info.value)
    with pytest.raises(ClickFormatError, match="absent.json"):
        read_task2_points(tmp_path / "absent.json")
