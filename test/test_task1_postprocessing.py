"""Task1/postprocessing.py: background clicks cut, the protocol rule, the SUV floor; and that
the rule reads the challenge's click order right on clicks from the real simulator."""
import numpy as np
import pytest

from Task1.postprocessing import (PostprocessOptions, all_lesions_clicked, apply_click_rules,
                                  cut_at_background_clicks, keep_clicked_components, postprocess_task1)


def _cubes():
    mask = np.zeros((40, 40, 40), bool)
    mask[5:10, 5:10, 5:10] = True      # lesion A
    mask[20:30, 20:30, 20:30] = True   # lesion B grown into an organ
    mask[32:36, 5:9, 5:9] = True       # an unclicked detection
    return mask


def test_background_click_removes_a_component_without_tumor_click():
    mask = _cubes()
    out = cut_at_background_clicks(mask, [(7, 7, 7)], [(33, 6, 6)], (1.0, 1.0, 1.0))
    assert not out[32:36, 5:9, 5:9].any() and out[5:10, 5:10, 5:10].all() and out[20:30, 20:30, 20:30].all()


def test_background_click_cuts_a_region_that_holds_a_tumor_click_too():
    mask = _cubes()
    out = cut_at_background_clicks(mask, [(22, 22, 22)], [(28, 28, 28)], (1.0, 1.0, 1.0))
    assert out[22, 22, 22] and not out[28, 28, 28]
    # the cut is the bisecting plane in mm: voxels nearer the background click go
    grid = np.indices((10, 10, 10)).sum(0) + 60  # i + j + k of the cube's voxels
    expected = grid <= 75  # nearer to (22,22,22) than to (28,28,28), ties kept
    assert np.array_equal(out[20:30, 20:30, 20:30], expected)
    # anisotropic spacing moves the cut: distances are in mm
    stretched = cut_at_background_clicks(mask, [(22, 22, 22)], [(22, 22, 28)], (1.0, 1.0, 3.0))
    assert stretched[22, 22, 24] and not stretched[22, 22, 26]


def test_background_cut_variants_spare_hotter_voxels_or_the_whole_clicked_component():
    """A hot lesion (SUV 10, i < 25) grown into a cooler rim (SUV 5, i >= 25) with the background
    click in the rim close to the lesion's edge: "nearest" cuts through the lesion at the half-way
    plane; "nearest_not_hotter" cuts only the rim; "none" keeps the clicked component whole. A
    component with a background click and no tumor click goes whole under every cut but
    "not_hotter"."""
    mask = _cubes()
    pet = np.ones(mask.shape, np.float32)
    pet[20:25, 20:30, 20:30] = 10.0
    pet[25:30, 20:30, 20:30] = 5.0
    tumor, background = [(21, 25, 25)], [(26, 25, 25), (33, 6, 6)]
    nearest = cut_at_background_clicks(mask, tumor, background, (1.0, 1.0, 1.0))
    assert nearest[20:24, 20:30, 20:30].all() and not nearest[24:30, 20:30, 20:30].any()  # half-way: i = 23.5
    not_hotter = cut_at_background_clicks(mask, tumor, background, (1.0, 1.0, 1.0), cut="nearest_not_hotter", pet=pet)
    assert not_hotter[20:25, 20:30, 20:30].all() and not not_hotter[25:30, 20:30, 20:30].any()
    whole = cut_at_background_clicks(mask, tumor, background, (1.0, 1.0, 1.0), cut="none")
    assert whole[20:30, 20:30, 20:30].all()
    for out in (nearest, not_hotter, whole):
        assert not out[32:36, 5:9, 5:9].any() and out[5:10, 5:10, 5:10].all()
    # "not_hotter": a component that a tumor click holds is cut as by "nearest_not_hotter"; one
    # that no tumor click holds yet (the lesion's own click has not come) loses only what is no
    # hotter than its background click, so the lesion stays; a detection as hot as its click goes
    held = cut_at_background_clicks(mask, tumor, background, (1.0, 1.0, 1.0), cut="not_hotter", pet=pet)
    assert np.array_equal(held, not_hotter)
    for cut in ("not_hotter", "nearest_not_hotter"):
        unheld = cut_at_background_clicks(mask, [(7, 7, 7)], background, (1.0, 1.0, 1.0), cut=cut, pet=pet)
        assert not unheld[25:30, 20:30, 20:30].any() and not unheld[32:36, 5:9, 5:9].any()
        assert unheld[20:25, 20:30, 20:30].all() == (cut == "not_hotter") and unheld[5:10, 5:10, 5:10].all()
    with pytest.raises(ValueError, match="needs the PET"):
        cut_at_background_clicks(mask, tumor, background, (1.0, 1.0, 1.0), cut="nearest_not_hotter")
    with pytest.raises(ValueError, match="needs the PET"):
        cut_at_background_clicks(mask, tumor, background, (1.0, 1.0, 1.0), cut="not_hotter")
    with pytest.raises(ValueError, match="choose one of"):
        cut_at_background_clicks(mask, tumor, background, (1.0, 1.0, 1.0), cut="voronoi")
    # the chain operation passes the cut and the context's PET through
    from Task1.postprocessing import ChainContext, run_chain

    context = ChainContext(pet=pet, clicks={"tumor": tumor, "background": background}, spacing=(1.0, 1.0, 1.0))
    chained, report = run_chain(mask, [{"op": "click_rules", "protocol_rule": False,
                                        "background_cut": "nearest_not_hotter"}], context)
    assert np.array_equal(chained > 0, not_hotter) and report[0]["background_cut_voxels"] > 0


def test_spare_rim_keeps_an_unclicked_lesion_whose_background_click_is_on_its_edge():
    """A hot lesion (SUV 10) predicted one voxel wider than itself (its rim SUV 3) with a
    background click on that outer layer, before the lesion's own tumor click: with spare_rim the
    click cuts the rim (no hotter than the click) and the lesion stays; without, the component
    goes whole. A hot organ with its background click deep inside goes whole either way."""
    from Task1.postprocessing import ChainContext, run_chain

    mask = np.zeros((40, 40, 40), bool)
    pet = np.ones(mask.shape, np.float32)
    mask[4:13, 4:13, 4:13] = True          # the prediction: lesion 5:12 plus one rim layer
    pet[4:13, 4:13, 4:13] = 3.0
    pet[5:12, 5:12, 5:12] = 10.0
    mask[20:34, 20:34, 20:34] = True       # a hot organ the network marks
    pet[20:34, 20:34, 20:34] = 6.0
    pet[27, 27, 27] = 5.0                  # its click is no hotter than most of it
    tumor, background = [(38, 2, 38)], [(4, 8, 8), (27, 27, 27)]  # the tumor click is elsewhere
    spacing = (2.0, 2.0, 3.0)
    kept = cut_at_background_clicks(mask, tumor, background, spacing, cut="nearest_not_hotter", pet=pet,
                                    spare_rim=True)
    assert kept[5:12, 5:12, 5:12].all() and kept[4:13, 4:13, 4:13].sum() == 7 ** 3  # the rim layer went
    assert not kept[20:34, 20:34, 20:34].any()
    gone = cut_at_background_clicks(mask, tumor, background, spacing, cut="nearest_not_hotter", pet=pet)
    assert not gone.any()
    # a click one layer deeper is not on the rim: the component goes whole
    deeper = cut_at_background_clicks(mask, tumor, [(5, 8, 8)], spacing, cut="nearest_not_hotter", pet=pet,
                                      spare_rim=True)
    assert not deeper[4:13, 4:13, 4:13].any()
    # every background click of the component must be on its rim
    both = cut_at_background_clicks(mask, tumor, [(4, 8, 8), (8, 8, 8)], spacing, cut="nearest_not_hotter",
                                    pet=pet, spare_rim=True)
    assert not both[4:13, 4:13, 4:13].any()
    for cut in ("nearest", "not_hotter", "none"):
        with pytest.raises(ValueError, match="spare_rim: only with the background cut"):
            cut_at_background_clicks(mask, tumor, background, spacing, cut=cut, pet=pet, spare_rim=True)
    context = ChainContext(pet=pet, clicks={"tumor": tumor, "background": background}, spacing=spacing)
    chained, _ = run_chain(mask, [{"op": "click_rules", "protocol_rule": False, "background_cut": "nearest_not_hotter",
                                   "spare_rim": True}], context)
    assert np.array_equal(chained > 0, kept)


def test_protocol_rule_fires_only_when_a_click_returns_to_the_first_lesion():
    mask = _cubes()
    labels = __import__("cc3d").connected_components(mask.astype(np.uint8), connectivity=26)
    assert not all_lesions_clicked(labels, [(7, 7, 7), (22, 22, 22)])  # two centre clicks
    assert all_lesions_clicked(labels, [(7, 7, 7), (22, 22, 22), (5, 5, 5)])  # round two starts
    assert not all_lesions_clicked(labels, [(7, 7, 7), (22, 22, 22), (25, 25, 25)])  # B twice, not A
    out, report = apply_click_rules(mask, {"tumor": [[7, 7, 7], [22, 22, 22], [5, 5, 5]], "background": []},
                                    (2.0, 2.0, 2.0))
    assert report["protocol_rule_fired"] == 1 and not out[32:36, 5:9, 5:9].any() and out[7, 7, 7]
    kept, report = apply_click_rules(mask, {"tumor": [[7, 7, 7], [22, 22, 22], [5, 5, 5]], "background": []},
                                     (2.0, 2.0, 2.0), protocol_rule=False)
    assert report["protocol_rule_fired"] == 0 and kept[32:36, 5:9, 5:9].all()
    assert np.array_equal(keep_clicked_components(mask, [(7, 7, 7)]), np.pad(np.ones((5, 5, 5), bool),
                                                                            ((5, 30),) * 3))


def test_protocol_rule_on_the_challenge_simulator_clicks():
    """With n < 10 lesions the simulator's click n+1 returns to the first lesion; on the truth
    itself the rule fires exactly at step n+1 and keeps every lesion."""
    import cc3d

    from clicks import simulate_clicks

    rng = np.random.default_rng(5)
    label = np.zeros((48, 48, 40), np.uint8)
    for centre in ((10, 10, 10), (30, 12, 20), (12, 34, 28), (36, 36, 10)):
        label[tuple(slice(c - 2, c + 3) for c in centre)] = 1
    pet = rng.random(label.shape).astype(np.float32) + 5 * label
    clicks = simulate_clicks(label, pet)
    labels = cc3d.connected_components(label, connectivity=26)
    fired = [all_lesions_clicked(labels, [tuple(p) for p in clicks["tumor"][:s]]) for s in range(11)]
    assert fired == [False] * 5 + [True] * 6
    detection = label.astype(bool).copy()
    detection[44:47, 2:5, 2:5] = True  # an unclicked false positive
    out, report = apply_click_rules(detection, {"tumor": clicks["tumor"][:5], "background": clicks["background"][:5]},
                                    (2.0, 2.0, 2.0))
    assert report["protocol_rule_fired"] and np.array_equal(out.astype(bool), label.astype(bool))


def test_postprocess_suv_floor_and_switches():
    mask = _cubes()
    pet = np.full(mask.shape, 3.0, np.float32)
    pet[20:30, 20:30, 20:30] = 0.5
    out, report = postprocess_task1(mask, pet, None, (1, 1, 1), PostprocessOptions(remove_below_suv=1.0))
    assert out.dtype == np.uint8 and not out[20:30, 20:30, 20:30].any()
    floor = next(r for r in report if r["op"] == "suv_floor")
    assert floor["voxels_before"] - floor["voxels_after"] == 1000
    raw, report = postprocess_task1(mask, pet, {"tumor": [[7, 7, 7]], "background": [[33, 6, 6]]}, (1, 1, 1),
                                    PostprocessOptions(click_rules=False))
    assert np.array_equal(raw.astype(bool), mask) and report == []


@pytest.mark.parametrize("bad", [[[100, 0, 0]], [[-1, 3, 3]]])
def test_clicks_outside_the_grid_are_ignored(bad):
    mask = _cubes()
    out, _ = apply_click_rules(mask, {"tumor": bad, "background": bad}, (1, 1, 1))
    assert np.array_equal(out.astype(bool), mask)


def test_benchmark_reads_what_the_click_rules_did_from_the_chain_report():
    """benchmarks/bench_task1_model.py's click_rules_done reads the chain report: the protocol rule
    fired (a second click in the first clicked lesion) and the background cut removed the
    unclicked detection it holds; no click rules in the chain: nothing acted."""
    import sys
    from pathlib import Path

    from Task1.postprocessing import ChainContext, run_chain

    benchmarks = str(Path(__file__).resolve().parents[1] / "benchmarks")
    sys.path.insert(0, benchmarks)
    try:
        from bench_task1_model import click_rules_done
    finally:
        sys.path.remove(benchmarks)

    mask = _cubes()
    clicks = {"tumor": [(7, 7, 7), (22, 22, 22), (6, 6, 6)], "background": [(33, 6, 6)]}
    context = ChainContext(pet=np.ones(mask.shape, np.float32), clicks=clicks, spacing=(1.0, 1.0, 1.0))
    _, report = run_chain(mask, [{"op": "click_rules"}], context)
    assert click_rules_done(report) == {"protocol_rule_fired": 1, "background_cut_voxels": 4 * 4 * 4}
    _, report = run_chain(mask, [{"op": "click_rules"}], ChainContext(
        pet=context.pet, clicks={"tumor": [(7, 7, 7)], "background": []}, spacing=(1.0, 1.0, 1.0)))
    assert click_rules_done(report) == {"protocol_rule_fired": 0, "background_cut_voxels": 0}
    assert click_rules_done([]) == {"protocol_rule_fired": 0, "background_cut_voxels": 0}


def test_benchmark_reports_each_case_and_the_means_standard_error(capsys):
    """benchmarks/bench_task1_model.py keeps each case's curve ends in its summary (and --json) and
    prints them with the means' standard errors: two cases of known Dice, one without lesions
    (NaN) left out of the spread."""
    import sys
    from pathlib import Path

    benchmarks = str(Path(__file__).resolve().parents[1] / "benchmarks")
    sys.path.insert(0, benchmarks)
    try:
        from bench_task1_model import mean_and_standard_error, print_tables, summarise
    finally:
        sys.path.remove(benchmarks)

    mean, error = mean_and_standard_error([0.6, 0.8, float("nan")])
    assert mean == pytest.approx(0.7) and error == pytest.approx(np.std([0.6, 0.8], ddof=1) / np.sqrt(2))
    assert np.isnan(mean_and_standard_error([0.5])[1]) and np.isnan(mean_and_standard_error([])[0])

    errors = {"boundary_mm": 1.0, "true_positive": 9.0, "missed": 0.0, "boundary_fn": 1.0, "inner_fn": 0.0,
              "spurious": 0.0, "boundary_fp": 0.0, "spread_fp": 0.0}
    rules = {"protocol_rule_fired": 0, "background_cut_voxels": 0}

    def case(dice):
        return {"dice": dice, "fpv": [0.0] * 11, "fnv": [0.0] * 11, "errors": {"0": errors, "10": errors},
                "click_rules": {"0": rules, "10": rules}, "seconds_per_step": 1.0}

    result = {"cases": {"A": case([0.6] * 10 + [0.8]), "B": case([0.8] * 10 + [1.0])}, "peak_rss_mb": 100.0,
              "load_s": 0.1}
    summary = summarise(result)
    assert summary["per_case"]["A"] == {"dice_0": 0.6, "dice_10": 0.8, "auc_dice": pytest.approx(6.1)}
    assert summary["per_case"]["B"]["dice_10"] == 1.0
    print_tables({"m": summary}, "m", 2, "standard")
    out = capsys.readouterr().out
    assert "| m | A | 0.600 | 0.800 | 6.100 | 50 % |" in out  # (0.8 - 0.6) / (1 - 0.6)
    assert "| m | B | 0.800 | 1.000 | 8.100 | 100 % |" in out
    assert "DSC@0 0.700 +- 0.100, DSC@10 0.900 +- 0.100 (mean +- standard error)" in out
