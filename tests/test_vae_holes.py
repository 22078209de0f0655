"""Random hole masks (LaMa-style) for inpainting training and evaluation."""

import numpy as np
import pytest
import torch

from imgedit.errors import UsageError
from imgedit_vae.holes import KINDS, random_hole_mask


@pytest.mark.parametrize("kind", list(KINDS))
def test_masks_are_binary_nonempty_and_at_most_half(kind):
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        mask = random_hole_mask(96, 128, kind, g)
        assert mask.shape == (1, 96, 128)
        assert set(mask.unique().tolist()) <= {0.0, 1.0}
        assert 0 < mask.mean() <= 0.5


def test_same_seed_same_mask_and_kinds_differ_in_size():
    a = random_hole_mask(256, 256, "medium", torch.Generator().manual_seed(5))
    b = random_hole_mask(256, 256, "medium", torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    g = torch.Generator().manual_seed(1)
    area = {k: sum(float(random_hole_mask(256, 256, k, g).mean()) for _ in range(30)) for k in KINDS}
    assert area["thin"] < area["thick"]


def test_tiny_images_and_bad_kind():
    assert random_hole_mask(8, 8, "thick", torch.Generator().manual_seed(0)).sum() >= 1
    with pytest.raises(UsageError, match="hole kind"):
        random_hole_mask(32, 32, "huge", torch.Generator())


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("size", [(1, 1), (1, 50), (2, 2), (3, 7), (5, 5)])
def test_any_size_terminates_with_a_hole(kind, size):
    import signal

    def hung(*_):
        raise AssertionError(f"random_hole_mask{size} did not return")

    # a 1x1 image used to loop forever (cv2's border never erodes a full mask)
    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(10)
    try:
        g = torch.Generator().manual_seed(0)
        masks = [random_hole_mask(*size, kind, g) for _ in range(5)]
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    for mask in masks:
        assert mask.shape == (1, *size) and mask.sum() >= 1
        if size[0] * size[1] >= 2:  # room for a hole of at most half the image
            assert mask.mean() <= 0.5


def test_a_full_draw_is_shrunk_to_fit():
    from imgedit_vae.holes import _shrink

    full = np.ones((20, 30), np.uint8)
    shrunk = _shrink(full.copy(), 0.5)
    assert 0 < shrunk.mean() <= 0.5 and shrunk[10, 15] == 1  # eroded from the edges inwards
    assert _shrink(np.ones((1, 1), np.uint8), 0.5).tolist() == [[1]]
