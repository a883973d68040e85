"""A plain, slow reference of the challenge's click simulation, written from the description in
``../shared/challenge-facts.md`` (full-volume scipy distance transform per component, the
global NumPy generator seeded with 42, full-volume ``np.nonzero`` lists). Test helper only."""
import cc3d
import numpy as np
from scipy import ndimage


def _edt(mask):
    return ndimage.distance_transform_edt(mask)


def reference_clicks(label, pet=None, budget=10, with_background=True, background_in_component=False):
    saved = np.random.get_state()
    try:
        np.random.seed(42)
        label = np.asarray(label)
        clicks = {"tumor": [], "background": []}
        if np.sum(label) != 0:
            cc = cc3d.connected_components(label, connectivity=26)
            unique = np.unique(cc)[1:]
            sampled = np.random.choice(unique, size=min(budget, len(unique)), replace=False)
            for lab in sampled:
                dist = _edt(cc == lab)
                centre = np.unravel_index(np.argmax(dist), dist.shape)
                clicks["tumor"].append([int(c) for c in centre])
            n = len(clicks["tumor"])
            while n < budget:
                for lab in sampled:
                    mask = cc == lab
                    dist = _edt(mask)
                    inverted = (dist.max() - dist) * (dist > 0)
                    surface = (inverted == inverted.max()) & mask
                    indices = np.array(np.nonzero(surface)).T
                    click = indices[np.random.choice(indices.shape[0])]
                    assert label[tuple(click)]
                    clicks["tumor"].append([int(c) for c in click])
                    n += 1
                    if n == budget:
                        break
        if with_background:
            pet = np.asarray(pet, dtype=np.float64)
            threshold = np.percentile(pet[label == 0], 99.75)
            region = (pet > threshold) * (label == 0)
            cc = cc3d.connected_components(region, connectivity=26)
            unique = np.unique(cc)[1:]
            sampled = np.random.choice(unique, size=min(budget, len(unique)), replace=False)
            for lab in sampled:
                dist = _edt(cc == lab)
                centre = np.unravel_index(np.argmax(dist), dist.shape)
                clicks["background"].append([int(c) for c in centre])
            n = len(clicks["background"])
            while n < budget:
                for lab in sampled:
                    mask = cc == lab
                    dist = _edt(mask)
                    inverted = (dist.max() - dist) * (dist > 0)
                    outside = mask if background_in_component else (mask == 0)
                    indices = np.array(np.nonzero((inverted == inverted.max()) & outside)).T
                    if len(indices) == 0:
                        indices = np.array(np.nonzero(mask)).T
                    while True:  # the published code aborts on tumor; the toolkit draws again
                        click = indices[np.random.choice(indices.shape[0])]
                        if not label[tuple(click)]:
                            break
                    clicks["background"].append([int(c) for c in click])
                    n += 1
                    if n == budget:
                        break
        return clicks
    finally:
        np.random.set_state(saved)
