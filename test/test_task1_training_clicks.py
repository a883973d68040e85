"""Training-time clicks obey the challenge's rules; the click channels; pre-trained weights with
2 more input channels."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from clicks.simulate import ClickDrawSettings, case_share_of_tumor_clicks, simulate_clicks, simulate_patch_clicks
from Task1.click_transforms import AppendClickChannelsTransform


def _patch(seed=0, shape=(40, 36, 32)):
    rng = np.random.default_rng(seed)
    label = np.zeros(shape, bool)
    label[5:15, 6:14, 4:12] = True          # a box lesion
    label[25:30, 20:27, 18:23] = True       # another one
    label[33, 30, 28] = True                # a one-voxel lesion
    pet = rng.normal(1.0, 0.1, size=shape).astype(np.float32)
    pet[label] += 5.0
    pet[30:33, 3:6, 25:28] += 4.0           # non-tumor uptake (a 27-voxel hot spot)
    return label, pet


def _edt_centres(label):
    """Per 26-connected component: the first arg-max of its full-volume distance transform."""
    comps, n = ndimage.label(label, structure=np.ones((3, 3, 3)))
    centres = set()
    for c in range(1, n + 1):
        dist = ndimage.distance_transform_edt(comps == c)
        centres.add(tuple(int(v) for v in np.unravel_index(int(np.argmax(dist)), dist.shape)))
    return centres


@pytest.mark.parametrize("step", [0, 1, 2, 3, 5, 10])
def test_tumor_clicks_follow_the_rules(step):
    label, pet = _patch()
    clicks = simulate_patch_clicks(label, pet, step, np.random.default_rng(step))
    tumor = [tuple(p) for p in clicks["tumor"]]
    assert len(tumor) == step                      # surface clicks fill up to the step
    assert all(label[p] for p in tumor)
    n_components = 3
    centres = _edt_centres(label)
    # the first min(step, n) clicks are component centres (EDT arg-max), distinct components
    first = tumor[:min(step, n_components)]
    assert set(first) <= centres and len(set(first)) == len(first)
    # fill-up clicks lie on a component's surface: a 6-neighbour is outside the label
    padded = np.pad(label, 1)
    for p in tumor[n_components:]:
        i, j, k = (v + 1 for v in p)
        neighbours = [padded[i - 1, j, k], padded[i + 1, j, k], padded[i, j - 1, k], padded[i, j + 1, k],
                      padded[i, j, k - 1], padded[i, j, k + 1]]
        assert not all(neighbours), p


@pytest.mark.parametrize("step", [1, 4, 10])
def test_background_clicks_on_high_uptake_outside_tumor(step):
    label, pet = _patch(seed=3)
    clicks = simulate_patch_clicks(label, pet, step, np.random.default_rng(11),
                                   settings=ClickDrawSettings(background_in_component=True))
    background = [tuple(p) for p in clicks["background"]]
    assert len(background) == step
    threshold = np.percentile(pet[~label], 99.75)
    region = (pet > threshold) & ~label
    assert all(not label[p] for p in background)
    assert all(region[p] for p in background)       # restricted fill-up: inside the region
    # the first click is the centre of a sampled component of the region
    assert background[0] in _edt_centres(region)


def test_background_quirk_never_clicks_tumor_and_respects_padding():
    label, pet = _patch(seed=5)
    valid = np.ones(label.shape, bool)
    valid[:, :, :3] = False                         # padding (nnU-Net label -1)
    pet[:, :, :3] = 50.0                            # would be the hottest region if not excluded
    for seed in range(5):
        clicks = simulate_patch_clicks(label, pet, 10, np.random.default_rng(seed), valid=valid)
        assert len(clicks["background"]) == 10
        assert all(not label[tuple(p)] and valid[tuple(p)] for p in clicks["background"])


def test_patch_without_tumor_or_uptake():
    shape = (12, 12, 12)
    clicks = simulate_patch_clicks(np.zeros(shape, bool), np.ones(shape, np.float32), 5, np.random.default_rng(0))
    assert clicks == {"tumor": [], "background": []}  # no tumor, flat PET: no region above the percentile


def test_perturbed_clicks_stay_in_their_region():
    label, pet = _patch(seed=2)
    for seed in range(5):
        settings = ClickDrawSettings(center_offset=3, edge_offset=3, symmetric_offsets=True)
        clicks = simulate_patch_clicks(label, pet, 10, np.random.default_rng(seed), settings=settings)
        assert all(label[tuple(p)] for p in clicks["tumor"])
        assert all(not label[tuple(p)] for p in clicks["background"])


def _centre_moves(settings, seeds=range(30)):
    """Per axis, the offsets by which the first tumor click (a box lesion's centre) moved."""
    label = np.zeros((30, 30, 30), bool)
    label[5:25, 5:25, 5:25] = True
    pet = np.ones(label.shape, np.float32)
    pet[label] = 5.0
    centre = np.asarray(simulate_patch_clicks(label, pet, 1, np.random.default_rng(0))["tumor"][0])
    moves = []
    for seed in seeds:
        moved = simulate_patch_clicks(label, pet, 1, np.random.default_rng(seed), settings=settings)["tumor"][0]
        moves.append(np.asarray(moved) - centre)
    return np.asarray(moves)


def test_offsets_are_symmetric_for_training_and_one_sided_as_the_challenge():
    """The one deliberate departure of training clicks: offsets in [-n, n]; the challenge's
    simulator (and settings without symmetric_offsets) move clicks by 0..n only."""
    symmetric = _centre_moves(ClickDrawSettings(center_offset=2, symmetric_offsets=True))
    one_sided = _centre_moves(ClickDrawSettings(center_offset=2, symmetric_offsets=False))
    assert symmetric.min() == -2 and symmetric.max() == 2
    assert one_sided.min() == 0 and one_sided.max() == 2
    assert not _centre_moves(ClickDrawSettings()).any()  # no offsets unless asked


def test_transform_appends_two_channels_with_peaks_at_clicks():
    import torch

    label, pet = _patch()
    image = torch.from_numpy(np.stack([np.zeros_like(pet), pet]))
    seg = torch.from_numpy(label[None].astype(np.int16))
    np.random.seed(0)
    transform = AppendClickChannelsTransform(pet_channel=1, fixed_step=3)
    out = transform(image=image, segmentation=seg)
    assert out["image"].shape == (4, *label.shape)
    assert torch.equal(out["image"][:2], image) and torch.equal(out["segmentation"], seg)
    tumor_map = out["image"][2].numpy()
    background_map = out["image"][3].numpy()
    assert tumor_map.max() == pytest.approx(1.0) and background_map.max() == pytest.approx(1.0)
    peaks = np.argwhere(tumor_map == 1.0)
    assert 1 <= len(peaks) <= 3 and all(label[tuple(p)] for p in peaks)
    # step 0: empty click channels
    out0 = AppendClickChannelsTransform(fixed_step=0)(image=image, segmentation=seg)
    assert float(out0["image"][2:].abs().sum()) == 0.0


def test_random_step_covers_zero_to_ten():
    import torch

    label, pet = _patch()
    image = torch.from_numpy(np.stack([np.zeros_like(pet), pet]))
    seg = torch.from_numpy(label[None].astype(np.int16))
    np.random.seed(1)
    transform = AppendClickChannelsTransform(encoding="gaussian")
    n_peaks = set()
    for _ in range(40):
        out = transform(image=image, segmentation=seg)
        n_peaks.add(int((out["image"][2] == 1.0).sum() > 0))
    assert n_peaks == {0, 1}  # some samples have step 0 (no tumor click), others have clicks


def _share_by_simulation(n_patch, n_case, n_clicks, seed):
    """The patch's share counted on a real case: n_case one-voxel-apart lesions, the published
    sampling on all of them, clicks counted on the first n_patch."""
    label = np.zeros((4 * n_case, 5, 5), bool)
    for c in range(n_case):
        label[4 * c:4 * c + 3, 1:4, 1:4] = True   # 3x3x3 cubes, separated by a slice
    clicks = simulate_patch_clicks(label, np.ones(label.shape, np.float32), n_clicks,
                                   np.random.default_rng(seed))
    return sum(1 for p in clicks["tumor"] if p[0] < 4 * n_patch)


@pytest.mark.parametrize("n_patch,n_case", [(1, 1), (1, 4), (2, 5), (1, 12), (3, 3)])
def test_case_share_of_tumor_clicks_matches_the_published_sampling(n_patch, n_case):
    """Counted directly (the patch's lesions among a case's) and by the rule, the share has the
    same distribution; without further lesions the patch gets every click."""
    for n_clicks in (0, 1, 3, 10):
        rule = [case_share_of_tumor_clicks(n_patch, n_case, n_clicks, np.random.default_rng(s)) for s in range(300)]
        counted = [_share_by_simulation(n_patch, n_case, n_clicks, s) for s in range(300)]
        assert min(rule) >= 0 and max(rule) <= n_clicks
        assert np.mean(rule) == pytest.approx(np.mean(counted), abs=0.25)
        assert np.mean(rule) == pytest.approx(n_clicks * n_patch / n_case, abs=0.25)
        if n_case == n_patch:
            assert set(rule) == {n_clicks}
    # 10 clicks over 8 lesions: each has its centre click, 2 of 8 a fill-up click too
    shares = [case_share_of_tumor_clicks(1, 8, 10, np.random.default_rng(s)) for s in range(200)]
    assert set(shares) == {1, 2} and np.mean(shares) == pytest.approx(10 / 8, abs=0.1)


def test_transform_with_case_extra_lesions_gives_fewer_tumor_clicks_and_the_same_background():
    import torch

    label, pet = _patch()
    image = torch.from_numpy(np.stack([np.zeros_like(pet), pet]))
    seg = torch.from_numpy(label[None].astype(np.int16))
    counts = {}
    for extra in (0, 11):
        transform = AppendClickChannelsTransform(pet_channel=1, fixed_step=10, case_extra_lesions=extra)
        np.random.seed(5)
        tumor, background = [], []
        for _ in range(30):
            out = transform(image=image, segmentation=seg)
            tumor.append(int((out["image"][2] == 1.0).sum()))
            background.append(int((out["image"][3] == 1.0).sum()))
        counts[extra] = (tumor, background)
    assert min(counts[0][0]) >= 3           # the patch is the case: 10 clicks on its 3 lesions
    assert np.mean(counts[11][0]) < np.mean(counts[0][0])
    assert min(counts[11][0]) < 3           # some lesions of the patch get no click
    assert np.mean(counts[11][1]) == pytest.approx(np.mean(counts[0][1]), abs=1.0)
    with pytest.raises(ValueError, match="case_extra_lesions"):
        AppendClickChannelsTransform(case_extra_lesions=-1)


def test_pretrained_weights_extended_for_click_channels(tmp_path):
    """A 2-channel checkpoint loads into the 4-channel network through nnU-Net's own loader; with
    empty click channels the extended network computes exactly what the pre-trained one did."""
    import torch
    from dynamic_network_architectures.architectures.unet import PlainConvUNet

    from Task1.pretrained import extend_input_channels, load_pretrained_weights_extending

    def net(channels):
        torch.manual_seed(channels)
        return PlainConvUNet(channels, 2, (4, 8), torch.nn.Conv3d, 3, (1, 2), (1, 1), 2, (1,), True,
                             torch.nn.InstanceNorm3d, {"eps": 1e-5, "affine": True}, None, None,
                             torch.nn.LeakyReLU, {"inplace": True}, deep_supervision=False).eval()

    small, large = net(2), net(4)
    checkpoint = tmp_path / "pretrained.pth"
    torch.save({"network_weights": small.state_dict()}, checkpoint)
    weights, extended = extend_input_channels(small.state_dict(), large.state_dict())
    assert extended and all(weights[k].shape == large.state_dict()[k].shape for k in extended)
    load_pretrained_weights_extending(large, str(checkpoint))
    x = torch.randn(1, 2, 8, 8, 8)
    with torch.no_grad():
        expected = small(x)
        got = large(torch.cat((x, torch.zeros(1, 2, 8, 8, 8)), 1))
    # segmentation layers are not transferred by nnU-Net's loader: compare the decoder input instead
    for key, value in small.state_dict().items():
        if ".seg_layers." in key:
            continue
        target = large.state_dict()[key]
        if key in extended:
            assert torch.equal(target[:, :2], value) and float(target[:, 2:].abs().sum()) == 0.0
        else:
            assert torch.equal(target, value), key
    assert expected.shape == got.shape


def test_patch_percentile_leaves_out_tumor_and_padding_exactly():
    """The background region of a patch: PET above the exact 99.75th percentile of the voxels
    that are neither tumor nor padding (np.percentile in float64, bit for bit)."""
    from clicks.simulate import background_threshold

    rng = np.random.default_rng(4)
    for trial in range(6):
        shape = tuple(int(s) for s in rng.integers(5, 40, size=3))
        values = rng.normal(size=shape).astype(np.float32)
        if trial % 2:
            values = np.round(values, 1)  # many ties
        excluded = rng.random(shape) > 0.8 if trial % 3 else np.zeros(shape, bool)
        expected = np.percentile(values[~excluded].astype(np.float64), 99.75)
        assert background_threshold(values, excluded) == expected


def test_training_clicks_on_a_whole_image_equal_the_simulators():
    """One click path: the training function, given a whole image as the challenge reads it
    (Fortran-ordered), the challenge's generator (RandomState(42)) and the challenge's settings,
    gives exactly the simulator's clicks, for several phantoms, budgets and offsets."""
    from autopet_common.phantoms import make_petct_case

    for seed, budget, offsets in ((0, 10, None), (1, 3, None), (2, 10, 2), (3, 7, 3)):
        case = make_petct_case(seed=seed, tracer="PSMA" if seed % 2 else "FDG", shape=(48, 40, 56))
        label, pet = np.asfortranarray(case.label), np.asfortranarray(case.pet)
        expected = simulate_clicks(label, pet, click_budget=budget, center_offset=offsets, edge_offset=offsets)
        settings = ClickDrawSettings(center_offset=offsets, edge_offset=offsets, symmetric_offsets=False)
        got = simulate_patch_clicks(label, pet, budget, np.random.RandomState(42),
                                    perturb_rng=np.random.default_rng(42), settings=settings)
        assert got == expected, (seed, budget, offsets)
        assert len(got["tumor"]) == budget and len(got["background"]) == budget


def test_patch_centres_match_the_challenge_simulator():
    """With a step >= the number of components, our centre clicks are exactly the published
    algorithm's centre clicks (clicks.simulate_clicks, full-volume implementation)."""
    label, pet = _patch(seed=8)
    reference = simulate_clicks(label.astype(np.uint8), pet, click_budget=10)
    ours = simulate_patch_clicks(label, pet, 10, np.random.default_rng(0))
    n_tumor = 3
    assert {tuple(p) for p in ours["tumor"][:n_tumor]} == {tuple(p) for p in reference["tumor"][:n_tumor]}
    threshold = np.percentile(pet[~label], 99.75)
    region = (pet > threshold) & ~label
    from scipy import ndimage

    n_background = ndimage.label(region, structure=np.ones((3, 3, 3)))[1]
    k = min(10, n_background)
    if n_background <= 10:  # every component sampled: the same centre set
        assert {tuple(p) for p in ours["background"][:k]} == {tuple(p) for p in reference["background"][:k]}
    else:  # a sample of the same centre set
        centres = _edt_centres(region)
        assert {tuple(p) for p in ours["background"][:k]} <= centres
        assert {tuple(p) for p in reference["background"][:k]} <= centres
