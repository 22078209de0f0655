"""Random hole masks (LaMa-style) for inpainting training and evaluation."""

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
