"""Training-time clicks obey the challenge's rules; the click channels; pre-trained weights with
2 more input channels."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from Task1.click_transforms import AppendClickChannelsTransform, simulate_patch_clicks


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
    clicks = simulate_patch_clicks(label, pet, step, np.random.default_rng(11), background_fill_quirk=False)
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
        clicks = simulate_patch_clicks(label, pet, 10, np.random.default_rng(seed), center_offset=3, edge_offset=3)
        assert all(label[tuple(p)] for p in clicks["tumor"])
        assert all(not label[tuple(p)] for p in clicks["background"])


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


def test_high_percentile_is_exact():
    from Task1.click_transforms import high_percentile

    rng = np.random.default_rng(4)
    for trial in range(6):
        shape = tuple(int(s) for s in rng.integers(5, 40, size=3))
        values = rng.normal(size=shape).astype(np.float32)
        if trial % 2:
            values = np.round(values, 1)  # many ties
        candidates = rng.random(shape) < 0.8 if trial % 3 else None
        expected = np.percentile(values if candidates is None else values[candidates], 99.75)
        assert high_percentile(values, candidates) == pytest.approx(expected, rel=1e-6, abs=1e-6)
    assert high_percentile(np.ones((4, 4, 4)), np.zeros((4, 4, 4), bool)) is None


def test_patch_centres_match_the_challenge_simulator():
    """With a step >= the number of components, our centre clicks are exactly the published
    algorithm's centre clicks (clicks.simulate_clicks, full-volume implementation)."""
    from clicks import simulate_clicks

    label, pet = _patch(seed=8)
    reference = simulate_clicks(label.astype(np.uint8), pet, click_budget=10)
    ours = simulate_patch_clicks(label, pet, 10, np.random.default_rng(0), background_fill_quirk=True)
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
