"""Learned inpainting: crops and working resolution, known pixels, seeds,
the operation and verb, the evaluation's mask conventions, shipped weights.

Behaviour tests use a tiny untrained model (what is checked does not depend
on training); the shipped weights get their own tests.
"""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from imgedit.errors import MaskError, ShapeError, UsageError, WeightsError
from imgedit.models import save_weights, sha256_file
from imgedit_vae import inpaint as inpaint_module
from imgedit_vae.evaluate_inpaint import classical_methods, evaluate, pair_cases, synthetic_cases
from imgedit_vae.inpaint import Region, hole_regions, inpaint_vae, load_inpainter, working_scale, working_scales
from imgedit_vae.model import InpaintVAE, VAEConfig
from imgedit_vae.operations import INPAINT_MODEL_NAME, model_spec

from conftest import smooth_images, smooth_rgb

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "photo.jpg"
TINY = VAEConfig(widths=(8, 16, 16, 16), blocks=(1, 1, 1, 1), latent_channels=4, residual=False)


# torch 2.4 (the floor) computes one fill twice in a process an ulp apart
# (3e-8, far below an 8-bit level); later releases, to the bit
_TO_THE_BIT = tuple(int(v) for v in torch.__version__.split("+")[0].split(".")[:2]) >= (2, 5)


def same_fill(a, b):
    return torch.equal(a, b) if _TO_THE_BIT else torch.allclose(a, b, rtol=0, atol=1e-6)


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    torch.manual_seed(0)
    model = InpaintVAE(TINY)  # untrained: its prior has unit spread, so samples differ
    path = tmp_path_factory.mktemp("weights") / "tiny-inpaint.safetensors"
    save_weights(model.state_dict(), path, {"name": "tiny-inpaint", "model_config": TINY.to_dict()})
    return path


@pytest.fixture(scope="module")
def tiny(tiny_weights):
    return load_inpainter("cpu", tiny_weights)


@pytest.fixture(scope="module")
def photo():
    """A 192x256 crop of the bundled photo, (1, 3, H, W) in [0, 1]."""
    rgb = np.asarray(Image.open(EXAMPLE).convert("RGB"))[60:252, 100:356]
    return torch.from_numpy(rgb.copy()).permute(2, 0, 1)[None].float() / 255


def box_mask(h, w, top, left, size):
    mask = torch.zeros(1, 1, h, w)
    mask[..., top : top + size, left : left + size] = 1
    return mask


def test_known_pixels_are_kept_bit_for_bit(tiny, photo):
    mask = box_mask(*photo.shape[-2:], 50, 60, 40)
    image = photo.clone()
    image[mask.expand_as(image) > 0.5] = 1.0  # whatever the hole holds must not leak
    for seed in (None, 3):
        out = inpaint_vae(image, mask, tiny, seed=seed)
        known = mask.expand_as(out) < 0.5
        assert torch.equal(out[known], image[known])
        assert (out[~known] != 1.0).any()  # the hole was filled


def test_a_seeded_fill_adds_draw_scale_of_its_draw_to_the_deterministic_fill(tiny, photo, monkeypatch):
    import imgedit_vae.inpaint as inpainter

    mask = box_mask(*photo.shape[-2:], 50, 60, 48)
    deterministic, whole = inpaint_vae(photo, mask, tiny), inpaint_vae(photo, mask, tiny, seed=1)
    monkeypatch.setattr(inpainter, "DRAW_SCALE", 0.0)
    assert same_fill(inpaint_vae(photo, mask, tiny, seed=1), deterministic)  # none of the draw: no variety
    monkeypatch.setattr(inpainter, "DRAW_SCALE", 1.0)
    assert not same_fill(inpaint_vae(photo, mask, tiny, seed=1), whole)  # the shipped share is not the whole draw


def test_same_seed_same_fill_and_different_seeds_differ(tiny, photo):
    mask = box_mask(*photo.shape[-2:], 50, 60, 48)
    a, b = inpaint_vae(photo, mask, tiny, seed=1), inpaint_vae(photo, mask, tiny, seed=1)
    c = inpaint_vae(photo, mask, tiny, seed=2)
    mean_fill = inpaint_vae(photo, mask, tiny)
    assert same_fill(a, b)
    assert (a - c).abs().max() > 1e-4
    assert same_fill(mean_fill, inpaint_vae(photo, mask, tiny))  # no seed: deterministic


def test_a_seeded_fill_does_not_depend_on_the_images_place_in_the_batch(tiny, photo):
    mask = box_mask(*photo.shape[-2:], 50, 60, 48)
    other = photo.flip(-1)
    alone = inpaint_vae(photo, mask, tiny, seed=3)
    batch = inpaint_vae(torch.cat([other, photo, photo]), mask, tiny, seed=3)
    assert same_fill(batch[1:2], alone) and same_fill(batch[2:3], alone)  # index 1, index 2 (twice in one batch)
    assert same_fill(batch[0:1], inpaint_vae(other, mask, tiny, seed=3))  # index 0
    assert (inpaint_vae(photo, mask, tiny, seed=4) - alone).abs().max() > 1e-4  # another seed, another fill
    # samples (seeds 3, 4) of a batch: each panel as the image alone gets it, and they differ
    three, four = inpaint_module.inpaint_vae_fills(torch.cat([other, photo]), mask, tiny, [3, 4])
    assert same_fill(three[1:2], alone) and same_fill(four[1:2], inpaint_vae(photo, mask, tiny, seed=4))
    assert (three - four).abs().max() > 1e-4


def spy_on_forward(model, monkeypatch) -> list:
    """The image shape of every call of ``model`` from now on."""
    shapes = []
    forward = model.forward
    monkeypatch.setattr(model, "forward", lambda *a, **k: shapes.append(tuple(a[0].shape[-2:])) or forward(*a, **k))
    return shapes


def test_deterministic_fill_averages_scales_and_copies_a_seeded_fill_adds_one_draw(tiny, photo, monkeypatch):
    mask = box_mask(*photo.shape[-2:], 50, 61, 37)  # half-width about 18.5 px: worked on at 16/18.5 and at full size
    one = inpaint_vae(photo, mask, tiny, ensemble=1)
    four = inpaint_vae(photo, mask, tiny, ensemble=4)
    known = mask.expand_as(four) < 0.5
    assert torch.equal(four[known], photo[known])
    assert (four - one).abs().max() > 1e-4  # an untrained model is far from symmetric
    shapes = spy_on_forward(tiny, monkeypatch)
    inpaint_vae(photo, mask, tiny, ensemble=2)
    sizes = sorted(set(shapes))
    assert len(sizes) == 2 and all(shapes.count(size) == 2 for size in sizes)  # 2 copies (the crop is square: its quarter turn keeps the shape) x 2 scales
    assert sizes[1] == (101, 101)  # the 37-px box with 32 px of context each side, at full size
    shapes.clear()
    inpaint_vae(photo, mask, tiny, seed=5, ensemble=2)
    assert sorted(shapes) == sorted([*sizes, *sizes, sizes[0], sizes[0]])  # the same, then a draw and the prior mean at the first radius


def test_a_seeded_fill_is_the_deterministic_fill_plus_a_draws_departure_from_the_prior_mean(tiny, photo, monkeypatch):
    import imgedit_vae.model as model_module

    mask = box_mask(*photo.shape[-2:], 50, 61, 37)
    deterministic = inpaint_vae(photo, mask, tiny, ensemble=2)
    assert (inpaint_vae(photo, mask, tiny, seed=5, ensemble=2) - deterministic).abs().max() > 1e-3
    monkeypatch.setattr(model_module, "reparameterise", lambda mean, logvar, generator=None: mean)  # a prior of no spread
    assert same_fill(inpaint_vae(photo, mask, tiny, seed=5, ensemble=2), deterministic)


def test_fills_for_several_seeds_share_one_deterministic_fill(tiny, photo, monkeypatch):
    mask = box_mask(*photo.shape[-2:], 50, 61, 37)
    alone = [inpaint_vae(photo, mask, tiny, seed=seed) for seed in (None, 3, 4)]
    shapes = spy_on_forward(tiny, monkeypatch)
    together = inpaint_module.inpaint_vae_fills(photo, mask, tiny, [None, 3, 4])
    assert all(same_fill(a, b) for a, b in zip(alone, together))
    one_seed = len(shapes)
    shapes.clear()
    inpaint_vae(photo, mask, tiny, seed=3)
    assert one_seed == len(shapes) + 1  # one more draw, not another deterministic fill


def test_default_fill_takes_as_many_copies_as_fit_the_budget(tiny, photo, monkeypatch):
    mask = box_mask(*photo.shape[-2:], 50, 61, 37)
    shapes = spy_on_forward(tiny, monkeypatch)
    inpaint_vae(photo, mask, tiny, ensemble=1)
    per_copy = sum(h * w for h, w in shapes)  # one copy at every scale
    for budget, copies in ((1, 1), (3 * per_copy + 1, 3), (10**9, 8)):
        monkeypatch.setattr(inpaint_module, "ENSEMBLE_BUDGET", budget)
        shapes.clear()
        default = inpaint_vae(photo, mask, tiny)
        assert len(shapes) == 2 * copies
        assert same_fill(default, inpaint_vae(photo, mask, tiny, ensemble=copies))


def test_wide_hole_fill_is_the_full_size_fill_at_its_edge_and_the_coarse_mean_inside(tiny, photo, monkeypatch):
    made = []

    crops = []

    def stand_in(model, known, hole, scale, copies, generator):  # a fill that names its scale
        made.append((scale, copies))
        crops.append(known.shape[-2] * known.shape[-1])
        return torch.full_like(known, scale)

    monkeypatch.setattr(inpaint_module, "_model_fill", stand_in)
    monkeypatch.setattr(inpaint_module, "harmonise", lambda fill, *rest, **named: fill)
    mask = box_mask(*photo.shape[-2:], 40, 60, 100)  # half-width 50: coarse scales 16/50, 24/50, 32/50
    out = inpaint_vae(photo, mask, tiny)
    coarse = [scale for scale, _ in made[:-1]]
    assert coarse == pytest.approx([r / 50 for r in inpaint_module.WORK_RADII], rel=0.05)
    fitting = min(8, inpaint_module.FINE_BUDGET // crops[-1])
    assert fitting > 1 and made[-1] == (1.0, fitting)  # then full size, with as many copies as fit FINE_BUDGET
    mean = sum(coarse) / len(coarse)
    assert out[0, 0, 90, 110].item() == pytest.approx(mean)  # 50 px deep: the coarse mean alone
    edge = 1 / inpaint_module.FINE_RAMP  # 1 px deep: nearly all the full-size fill
    assert out[0, 0, 40, 110].item() == pytest.approx((1 - edge) * 1.0 + edge * mean)
    made.clear()
    inpaint_vae(photo, mask, tiny, ensemble=2)
    assert [copies for _, copies in made] == [2, 2, 2, 2]  # --ensemble sets the full-size fill's copies too


def test_edge_distance_counts_known_pixels_only():
    hole = np.zeros((10, 20), bool)
    hole[:, :10] = True  # reaches the crop's border on three sides
    depth = inpaint_module.edge_distance(hole)
    assert depth[5, 9] == 1 and depth[5, 0] == 10  # measured to the known column, not to the border
    assert (depth[~hole] == 0).all()


def test_small_hole_in_large_image_matches_running_on_its_crop(tiny):
    torch.manual_seed(0)
    big = torch.nn.functional.interpolate(torch.rand(1, 3, 60, 80), size=(600, 800), mode="bilinear")
    mask = box_mask(600, 800, 290, 390, 20)
    regions = hole_regions(mask[0, 0].numpy() > 0.5)
    assert len(regions) == 1
    r = regions[0]
    assert (r.bottom - r.top) * (r.right - r.left) < 0.02 * 600 * 800  # the model sees a small crop only
    whole = inpaint_vae(big, mask, tiny)
    crop = inpaint_vae(big[..., r.top : r.bottom, r.left : r.right].contiguous(), mask[..., r.top : r.bottom, r.left : r.right], tiny)
    assert torch.allclose(whole[..., r.top : r.bottom, r.left : r.right], crop, atol=1e-6)


def test_model_never_runs_over_the_whole_large_photo(tiny, monkeypatch):
    seen = []
    original = inpaint_module.fill_region

    def spy(model, image, hole, *rest):
        seen.append(image.shape[-2:].numel())
        return original(model, image, hole, *rest)

    monkeypatch.setattr(inpaint_module, "fill_region", spy)
    big = torch.rand(1, 3, 1200, 1600)
    mask = box_mask(1200, 1600, 30, 30, 16) + box_mask(1200, 1600, 1100, 1500, 16)  # two far-apart holes
    out = inpaint_vae(big, mask, tiny)
    assert len(seen) == 2 and max(seen) < 0.01 * 1200 * 1600
    assert torch.equal(out[mask.expand_as(out) < 0.5], big[mask.expand_as(big) < 0.5])


def test_regions_merge_when_contexts_overlap_and_cover_every_hole():
    hole = np.zeros((300, 300), bool)
    hole[100:110, 100:110] = hole[100:110, 130:140] = True  # close: one crop
    hole[280:290, 5:15] = True  # far: its own crop
    regions = hole_regions(hole)
    assert len(regions) == 2
    covered = np.zeros_like(hole)
    for r in regions:
        covered[r.top : r.bottom, r.left : r.right] = True
    assert covered[hole].all()
    assert Region(0, 10, 0, 10).overlaps(Region(5, 15, 5, 15)) and not Region(0, 10, 0, 10).overlaps(Region(10, 20, 0, 10))


def test_regions_are_placed_in_image_coordinates_and_an_empty_mask_has_none():
    hole = np.zeros((600, 800), bool)
    hole[290:310, 390:430] = True  # 20x40: context of max(MIN_CONTEXT, half of 40) = 32 px
    hole[590:600, 0:5] = True  # at the corner: its context stops at the photo's edge
    assert sorted(hole_regions(hole), key=lambda r: r.top) == [Region(258, 342, 358, 462), Region(558, 600, 0, 37)]
    assert hole_regions(np.zeros((600, 800), bool)) == []


@pytest.mark.parametrize("sigma", [0.8, 3.75, 15.0])
def test_the_seam_blur_on_the_cpu_matches_the_convolution_it_stands_for(sigma):
    torch.manual_seed(0)
    for shape in ((1, 1, 50, 70), (1, 3, 64, 40), (1, 4, 9, 12)):  # the last smaller than the blur's reach
        t = torch.rand(shape)
        fast = inpaint_module._blur(t, sigma)  # float32 on the CPU: OpenCV
        reference = inpaint_module._blur(t.double(), sigma)  # elsewhere: torch's separable convolution
        assert fast.shape == t.shape and fast.dtype == t.dtype
        assert torch.allclose(fast.double(), reference, atol=1e-6)
    edge = torch.zeros(1, 1, 20, 20)
    edge[..., :, :10] = 1
    assert float(inpaint_module._blur(edge, 3.0)[0, 0, 10, 0]) < 0.75  # zero outside, not the edge repeated


def test_wide_holes_are_worked_on_at_lower_resolution():
    thin = np.zeros((400, 400), bool)
    thin[:, 200:206] = True
    wide = np.zeros((400, 400), bool)
    wide[100:300, 100:300] = True
    assert working_scale(thin) == 1.0 and working_scales(thin) == [1.0]  # a thin stroke: one scale, full size
    assert working_scale(wide) == pytest.approx(inpaint_module.WORK_RADIUS / 100, rel=0.05)
    assert working_scales(wide) == pytest.approx([r / 100 for r in inpaint_module.WORK_RADII], rel=0.05)
    assert working_scales(np.ones((4000, 100), bool)) == [inpaint_module.MAX_WORK_SIDE / 4000]  # capped: one scale


def test_a_hole_thinner_than_the_training_holes_is_shown_grown_and_only_it_is_pasted(tiny, photo, monkeypatch):
    mask = torch.zeros(1, 1, *photo.shape[-2:])
    mask[..., 100, 20:230] = 1  # a 1-px scratch: on one phase of the 2x pixel-unshuffle
    seen = []
    forward = tiny.forward
    monkeypatch.setattr(tiny, "forward", lambda *a, **k: seen.append(a[1].clone()) or forward(*a, **k))
    image = photo.clone()
    image[mask.expand_as(image) > 0.5] = 1.0
    out = inpaint_vae(image, mask, tiny, ensemble=1)
    (shown,) = seen  # one scale (full size), one copy
    rows = shown[0, 0].sum(1)
    assert set(torch.nonzero(rows).flatten().tolist()) == {99, 100, 101}  # grown by 1 px (the crop starts at row 0)
    known = mask.expand_as(out) < 0.5
    assert torch.equal(out[known], image[known])  # the grown rim is pasted back from the input
    assert (out[~known] != 1.0).all()
    wide = np.zeros((40, 40), bool)
    wide[10:30, 5:35] = True
    line3 = np.zeros((40, 40), bool)
    line3[:, 18:21] = True
    for hole in (wide, line3):  # as wide as the training holes or wider: shown as it is
        assert np.array_equal(inpaint_module.shown_hole(hole), hole)


def test_seam_correction_blurs_at_reduced_scale_and_matches_the_full_scale_one(monkeypatch):
    torch.manual_seed(0)
    h, w = 400, 320
    smooth = lambda: torch.nn.functional.interpolate(torch.rand(1, 3, 8, 6), size=(h, w), mode="bicubic")
    image, fill = smooth(), smooth() * 0.8 + 0.1
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    hole = (((yy - 200) / 120) ** 2 + ((xx - 160) / 80) ** 2 < 1).float()[None, None]  # half-width 80 px
    width = 40.0
    blurred = []
    blur = inpaint_module._blur
    monkeypatch.setattr(inpaint_module, "_blur", lambda t, sigma: blurred.append(t.shape[-2:].numel()) or blur(t, sigma))
    reduced = inpaint_module.harmonise(fill, image, hole, width)
    assert blurred and max(blurred) <= h * w / 25  # every blur on the crop scaled down by 5
    full = inpaint_module.harmonise(fill, image, hole, width, factor=1)
    assert max(blurred[3:]) == h * w  # factor 1: the blurs at full size, as before
    assert (full - fill).abs().max() > 90 / 255  # a large correction to match (100 levels)
    assert (reduced - full).abs().max() < 2 / 255 and (reduced - full)[hole.expand_as(full) > 0.5].abs().mean() < 0.3 / 255


def test_a_long_thin_hole_across_a_large_photo_is_filled_in_pieces_at_full_size(tiny, monkeypatch):
    torch.manual_seed(0)
    h, w = 700, 3000
    big = torch.nn.functional.interpolate(torch.rand(1, 3, 14, 60), size=(h, w), mode="bilinear")
    mask = torch.zeros(1, 1, h, w)
    rows = (100 + torch.arange(w - 200) * 500 // (w - 200))  # a 3-px diagonal scratch, 2800 px long
    for dy in (-1, 0, 1):
        mask[0, 0, rows + dy, torch.arange(100, w - 100)] = 1
    seen = []
    original = inpaint_module.fill_region
    monkeypatch.setattr(inpaint_module, "fill_region", lambda model, image, hole, *rest: seen.append(image.shape[-2:]) or original(model, image, hole, *rest))
    out = inpaint_vae(big, mask, tiny, ensemble=1)
    assert len(seen) > 3 and max(max(shape) for shape in seen) <= inpaint_module.MAX_WORK_SIDE  # each worked on at full size
    known = mask.expand_as(out) < 0.5
    assert torch.equal(out[known], big[known]) and not torch.equal(out, big)
    hole_map = mask[0, 0].numpy() > 0.5
    (region,) = hole_regions(hole_map)
    pieces = inpaint_module.region_pieces(hole_map, region)
    owned = np.zeros((h, w), int)
    for piece in pieces:
        crop, core = piece.crop, piece.core
        assert crop.top <= core.top and core.bottom <= crop.bottom and crop.left <= core.left and core.right <= crop.right
        owned[core.top : core.bottom, core.left : core.right] += 1
    assert (owned[hole_map] == 1).all() and len(pieces) == len(seen)  # every hole pixel is pasted from one piece
    wide = np.zeros((h, w), bool)
    wide[200:500, 1000:2000] = True  # a wide hole keeps its one crop and its working scales
    (region,) = hole_regions(wide)
    assert inpaint_module.region_pieces(wide, region) == [inpaint_module.Piece(region, region)]


def test_the_applier_fills_its_input_in_place_as_a_copy_would_be_filled(tiny):
    # the host's applier may edit its input: a 48 MP photo with a small hole
    # was copied whole for its one fill. Pieces whose crops overlap must see
    # what a copy would: the hole holds junk, and earlier pieces' fills
    from imgedit_vae.inpaint import InpaintApplier

    torch.manual_seed(1)
    h, w = 400, 1600
    image = torch.nn.functional.interpolate(torch.rand(1, 3, 8, 32), size=(h, w), mode="bilinear")
    mask = torch.zeros(1, 1, h, w)
    rows = 60 + torch.arange(w - 200) * 250 // (w - 200)
    for dy in (-1, 0, 1):
        mask[0, 0, rows + dy, torch.arange(100, w - 100)] = 1  # a long scratch: several pieces
    mask[..., 20:60, 200:260] = 1
    mask[..., 300:340, 1300:1330] = 1
    image[mask.expand_as(image) > 0.5] = torch.rand(int((mask > 0.5).sum()) * 3)  # junk under the holes
    expected = inpaint_vae(image, mask, tiny, ensemble=1)
    given = image.clone()
    out = InpaintApplier(tiny, ensemble=1)(given, mask)
    assert out.data_ptr() == given.data_ptr()  # no second full-size image
    assert torch.equal(out, expected)
    samples = InpaintApplier(tiny, samples=2, ensemble=1)
    kept = image.clone()
    assert samples(kept, mask).shape[-1] == 2 * w and torch.equal(kept, image)  # several fills: copies
    gray = image[:, :1].expand(1, 3, h, w)  # one pixel in three places: filled in a copy
    assert torch.equal(InpaintApplier(tiny, ensemble=1)(gray, mask), inpaint_vae(gray.clone(), mask, tiny, ensemble=1))
    # the photo's grain on a hole filled in pieces (a piece's box is numpy ints: the seed was refused)
    grained = inpaint_vae(image, mask, tiny, ensemble=1, grain=True)
    assert not torch.equal(grained, expected) and torch.equal(grained[mask.expand_as(image) < 0.5],
                                                               image[mask.expand_as(image) < 0.5])


def test_grayscale_in_grayscale_out_and_no_hole_is_a_copy(tiny, photo):
    gray = photo.mean(1, keepdim=True).expand(1, 3, *photo.shape[-2:]).contiguous()
    mask = box_mask(*photo.shape[-2:], 40, 40, 30)
    out = inpaint_vae(gray, mask, tiny)
    assert torch.equal(out[:, 0], out[:, 1]) and torch.equal(out[:, 1], out[:, 2])
    known = (mask < 0.5).expand_as(gray)
    levels = torch.arange(gray[0, 0].numel(), dtype=torch.float32).view_as(gray[0, 0]) % 65536 / 65535
    gray16 = levels.expand_as(gray).contiguous()  # 16-bit levels: the mean of three copies of one is not always it
    assert torch.equal(inpaint_vae(gray16, mask, tiny)[known], gray16[known])  # bit for bit: the mean is the fill's alone
    tinted = gray.clone()
    tinted[0, 0, 101, 101] += 0.1  # one coloured pixel, off any sparse sample: a colour photo
    hole = mask[0, 0] > 0.5
    assert not torch.equal(inpaint_vae(tinted, mask, tiny)[0, 0][hole], inpaint_vae(tinted, mask, tiny)[0, 1][hole])
    together = inpaint_vae(torch.cat([tinted, gray]), mask, tiny)  # each image of a batch decides for itself
    assert torch.equal(together[1], out[0]) and not torch.equal(together[0, 0][hole], together[0, 1][hole])
    assert torch.equal(inpaint_vae(photo, torch.zeros(1, 1, *photo.shape[-2:]), tiny), photo)


def test_bad_input(tiny, photo):
    with pytest.raises(ShapeError):
        inpaint_vae(torch.rand(1, 1, 8, 8), torch.zeros(1, 1, 8, 8), tiny)
    with pytest.raises(ShapeError):
        inpaint_vae(photo, torch.zeros(1, 1, 8, 8), tiny)
    with pytest.raises(MaskError):
        inpaint_vae(photo, None, tiny)


def test_weights_of_another_model_are_refused(tmp_path):
    with pytest.raises(WeightsError):
        load_inpainter("cpu", model_spec().weights)  # the denoiser's weights
    with pytest.raises(WeightsError):
        load_inpainter("cpu", tmp_path / "missing.safetensors")


def test_cli_inpaints_with_vae_by_default_and_writes_samples_side_by_side(tmp_path, invoke, tiny_weights, photo):
    rgb = (photo[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    mask = np.zeros(rgb.shape[:2], np.uint8)
    mask[50:90, 60:100] = 255
    Image.fromarray(mask).save(tmp_path / "a.mask.png")
    result = invoke("inpaint", tmp_path / "a.png", "-o", tmp_path / "one", "--weights", tiny_weights)
    assert result.exit_code == 0, result.output
    one = np.asarray(Image.open(tmp_path / "one" / "a.png"))
    assert one.shape == rgb.shape and np.array_equal(one[mask == 0], rgb[mask == 0])
    result = invoke("inpaint", tmp_path / "a.png", "-o", tmp_path / "three", "--weights", tiny_weights, "--samples", "3", "--seed", "7")
    assert result.exit_code == 0, result.output
    three = np.asarray(Image.open(tmp_path / "three" / "a.png"))
    w = rgb.shape[1]
    assert three.shape == (rgb.shape[0], 3 * w, 3)
    assert not np.array_equal(three[:, :w], three[:, w : 2 * w])
    result = invoke("inpaint", tmp_path / "a.png", "-o", tmp_path / "ens", "--weights", tiny_weights, "--ensemble", "2")
    assert result.exit_code == 0, result.output
    ens = np.asarray(Image.open(tmp_path / "ens" / "a.png"))
    assert np.array_equal(ens[mask == 0], rgb[mask == 0]) and not np.array_equal(ens, one)
    result = invoke("inpaint", tmp_path / "a.png", "-o", tmp_path / "bad", "--samples", "0")
    assert result.exit_code != 0 and "samples" in result.output and "Traceback" not in result.output
    result = invoke("inpaint", tmp_path / "a.png", "-o", tmp_path / "nine", "--weights", tiny_weights, "--seed", "9")
    nine = np.asarray(Image.open(tmp_path / "nine" / "a.png"))
    assert result.exit_code == 0 and np.array_equal(three[:, 2 * w :], nine)  # panel k is seed S+k, made again alone
    top = str(2**32 - 1)
    result = invoke("inpaint", tmp_path / "a.png", "-o", tmp_path / "top", "--weights", tiny_weights, "--seed", top,
                    "--samples", "2")
    assert result.exit_code == 2 and f"at most {2**32 - 2}" in result.output and not (tmp_path / "top").exists()


def test_vae_is_the_default_inpaint_method():
    from imgedit.registry import get_registry

    assert get_registry().get("inpaint").method == "vae"


# --- evaluation: masks, pairs and their conventions ---------------------------------


def write_pair(root, name, image, hole, hole_color):
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(root / "images" / f"{name}.png")
    white = hole if hole_color == "white" else ~hole
    Image.fromarray(white.astype(np.uint8) * 255).save(root / "masks" / f"{name}.png")


def test_pairs_follow_the_mask_convention_given(tmp_path):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (32, 40, 3), dtype=np.uint8)
    hole = np.zeros((32, 40), bool)
    hole[8:20, 10:30] = True
    write_pair(tmp_path / "white_set", "x", image, hole, "white")
    write_pair(tmp_path / "black_set", "x", image, hole, "black")
    white = pair_cases(tmp_path / "white_set", "white")
    black = pair_cases(tmp_path / "black_set", "black")
    for cases in (white, black):
        assert len(cases) == 1 and cases[0].scored
        assert np.array_equal(cases[0].mask[0, 0].numpy() > 0.5, hole)
    assert pair_cases(tmp_path, "white")[0].group in ("white_set", "black_set") and len(pair_cases(tmp_path)) == 2


def test_painted_over_holes_are_not_scored_and_missing_masks_fail(tmp_path):
    image = np.full((16, 16, 3), 90, np.uint8)
    image[2:6, 2:6] = 255  # hole painted white, as EdgeConnect's examples
    hole = np.zeros((16, 16), bool)
    hole[2:6, 2:6] = True
    write_pair(tmp_path / "set", "p", image, hole, "white")
    assert not pair_cases(tmp_path / "set")[0].scored
    Image.fromarray(image).save(tmp_path / "set" / "images" / "orphan.png")
    with pytest.raises(UsageError, match="no mask"):
        pair_cases(tmp_path / "set")
    with pytest.raises(UsageError, match="no images"):
        pair_cases(tmp_path / "set" / "masks")


def test_pair_masks_are_read_as_the_inpaint_verb_reads_them(tmp_path):
    image = np.full((16, 24, 3), 90, np.uint8)
    hole = np.zeros((16, 24), bool)
    hole[4:8, 4:12] = True
    write_pair(tmp_path / "set", "p", image, hole, "white")
    small = Image.fromarray(hole.astype(np.uint8) * 255).resize((12, 8), Image.Resampling.NEAREST)
    small.save(tmp_path / "set" / "masks" / "p.png")  # drawn on a half-size copy: resized
    assert np.array_equal(pair_cases(tmp_path / "set")[0].mask[0, 0].numpy() > 0.5, hole)
    Image.fromarray(np.zeros((24, 16), np.uint8)).save(tmp_path / "set" / "masks" / "p.png")  # turned
    with pytest.raises(MaskError, match="p.png"):
        pair_cases(tmp_path / "set")
    (tmp_path / "set" / "masks" / "p.png").write_bytes(b"not a png")
    with pytest.raises(MaskError, match="cannot read mask file .*p.png"):
        pair_cases(tmp_path / "set")


def test_seeded_masks_and_scores(photo):
    images = [(Path("a.png"), photo), (Path("b.png"), photo.flip(-1))]
    first, again = synthetic_cases(images, ["thin", "thick"], seed=0), synthetic_cases(images, ["thin", "thick"], seed=0)
    assert [c.group for c in first] == ["thin", "thin", "thick", "thick"]
    assert all(torch.equal(a.mask, b.mask) for a, b in zip(first, again))
    assert not torch.equal(first[0].mask, synthetic_cases(images, ["thin"], seed=1)[0].mask)
    methods = classical_methods()
    for fill in methods.values():
        out = fill(photo, first[2].mask)
        assert torch.equal(out[first[2].mask.expand_as(out) < 0.5], photo[first[2].mask.expand_as(photo) < 0.5])
    def truth(given, mask):  # a perfect fill: the case's own image (methods are given the hole zeroed)
        return next(case.image for case in first if case.mask is mask)

    rows = evaluate(first, {"truth": truth, "telea": methods["telea"]})
    truth = [r for r in rows if r.method == "truth"]
    assert len(rows) == 4 and all(r.images == 2 for r in rows)
    assert all(r.hole_psnr > 100 and r.ssim > 0.999 for r in truth)  # a perfect fill scores perfectly
    telea = [r for r in rows if r.method == "telea"]
    assert all(r.hole_psnr < r.psnr < 100 for r in telea)  # the hole alone is harder than the whole


def test_eval_command_runs_on_pairs(tmp_path, invoke, tiny_weights):
    rng = np.random.default_rng(1)
    hole = np.zeros((48, 48), bool)
    hole[10:30, 12:36] = True
    for i in range(2):
        write_pair(tmp_path / "pairs" / "s", f"im{i}", rng.integers(0, 255, (48, 48, 3), dtype=np.uint8), hole, "black")
    result = invoke("eval", "inpaint", "--pairs", tmp_path / "pairs", "--hole-color", "black", "--weights", tiny_weights,
                    "--sheet", tmp_path / "sheet.png", "--json")
    assert result.exit_code == 0, result.output
    import json

    report = json.loads(result.output[result.output.index("{"):])
    assert {r["method"] for r in report["rows"]} >= {"vae", "telea", "ns"}
    assert all(r["images"] == 2 for r in report["rows"])
    assert (tmp_path / "sheet.png").stat().st_size > 0
    assert report["precision"] == "fp32"
    table = invoke("eval", "inpaint", "--pairs", tmp_path / "pairs", "--hole-color", "black", "--weights", tiny_weights,
                   "--no-baselines")
    assert table.exit_code == 0 and "2 cases, cpu" in table.output and "mask seed" not in table.output  # no seed applies
    result = invoke("eval", "inpaint", "--weights", tiny_weights)
    assert result.exit_code != 0 and "--data" in result.output
    # the hole's colour is not guessed: white holes read as black ones score plausible, wrong numbers
    result = invoke("eval", "inpaint", "--pairs", tmp_path / "pairs", "--weights", tiny_weights)
    assert result.exit_code == 2 and "--pairs needs --hole-color white|black" in result.output


def test_eval_scores_bf16_where_the_verb_would_run_it(tmp_path, invoke, tiny_weights, monkeypatch):
    import json

    from imgedit import devices

    rng = np.random.default_rng(2)
    hole = np.zeros((48, 48), bool)
    hole[8:28, 10:30] = True
    write_pair(tmp_path / "pairs" / "s", "im", rng.integers(0, 255, (48, 48, 3), dtype=np.uint8), hole, "white")

    def vae_psnr(*extra):
        result = invoke("eval", "inpaint", "--pairs", tmp_path / "pairs", "--hole-color", "white", "--weights", tiny_weights, "--no-baselines",
                        "--json", *extra)
        assert result.exit_code == 0, result.output
        report = json.loads(result.output[result.output.index("{"):])
        return report["precision"], report["rows"][0]["psnr"]

    monkeypatch.setattr(devices, "cpu_has_bf16", lambda: False)
    assert vae_psnr("--precision", "bf16") == vae_psnr()  # this CPU could not: scored in fp32, as the verb runs
    monkeypatch.setattr(devices, "cpu_has_bf16", lambda: True)
    precision, psnr = vae_psnr("--precision", "bf16")
    assert precision == "bf16" and psnr != vae_psnr()[1]


def eval_json(result) -> dict:
    """The JSON report of an eval run whose output may start with warnings."""
    import json

    assert result.exit_code == 0, result.output
    return json.loads(result.stdout[result.stdout.index("{"):])


def write_rgb(path, h, w, seed=0):
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)
    return path


def test_ssim_needs_its_window_and_scores_a_hole_at_the_border():
    from imgedit_vae.metrics import SSIM_WINDOW, ssim

    with pytest.raises(ShapeError, match="11x11"):
        ssim(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8))
    image = torch.rand(1, 3, SSIM_WINDOW, 20).mul(255).round().div(255)
    corner = torch.zeros(1, 1, SSIM_WINDOW, 20)
    corner[..., :2, :2] = 1  # within 5 px of the border: no window is centred in it
    assert float(ssim(image, image, corner)) == pytest.approx(1.0)  # a perfect fill, not 0
    worse = image.clone()
    worse[..., :2, :2] = 1 - worse[..., :2, :2]
    assert float(ssim(worse, image, corner)) < 1


@pytest.mark.parametrize("kinds", ["thin", "thick"])
def test_eval_skips_images_too_small_for_ssim(tmp_path, invoke, tiny_weights, kinds):
    write_rgb(tmp_path / "one.png", 1, 1)  # the audit's 1x1 image hung in the mask generator
    write_rgb(tmp_path / "eight.png", 8, 8)  # ... and an 8x8 one crashed in SSIM
    args = ("eval", "inpaint", "--masks", kinds, "--weights", tiny_weights, "--no-baselines", "--ensemble", 1, "--json")
    result = invoke(*args, "--data", tmp_path / "one.png", "--data", tmp_path / "eight.png")
    assert result.exit_code == 2, result.output
    assert result.output.splitlines()[-1] == (f"Error: no image of at least 11x11 px (the SSIM window) in "
                                              f"{tmp_path / 'one.png'}, {tmp_path / 'eight.png'}")
    assert "Warning: skipping" in result.output and "1x1 px" in result.output and "8x8 px" in result.output

    write_rgb(tmp_path / "sixteen.png", 16, 16)
    report = eval_json(invoke(*args, "--data", tmp_path))
    assert [(r["group"], r["images"]) for r in report["rows"]] == [(kinds, 1)]
    assert 0 <= report["rows"][0]["hole_ssim"] <= 1


def test_pairs_whose_mask_has_no_hole_are_skipped(tmp_path, caplog):
    image = np.random.default_rng(3).integers(0, 255, (24, 24, 3), dtype=np.uint8)
    hole = np.zeros((24, 24), bool)
    hole[6:14, 6:14] = True
    write_pair(tmp_path / "set", "a", image, hole, "white")
    write_pair(tmp_path / "set", "b", image, np.zeros_like(hole), "white")  # nothing to fill: PSNR 120
    with caplog.at_level("WARNING", logger="imgedit"):
        cases = pair_cases(tmp_path / "set")
    assert [c.name for c in cases] == ["a.png"]
    assert any("b.png" in r.getMessage() and "no white hole" in r.getMessage() for r in caplog.records)
    rows = evaluate(cases, {"telea": classical_methods()["telea"]})
    assert rows[0].images == 1 and rows[0].hole_psnr < 100
    assert [c.name for c in pair_cases(tmp_path / "set", limit=1)] == ["a.png"]


def test_eval_fails_when_no_pair_can_be_scored(tmp_path, invoke, tiny_weights):
    image = np.full((32, 32, 3), 90, np.uint8)
    image[4:12, 4:12] = 255  # the hole painted over, as EdgeConnect's examples
    hole = np.zeros((32, 32), bool)
    hole[4:12, 4:12] = True
    write_pair(tmp_path / "ec" / "s", "p", image, hole, "white")
    args = ("eval", "inpaint", "--pairs", tmp_path / "ec", "--hole-color", "white", "--weights", tiny_weights, "--no-baselines")
    result = invoke(*args)
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        f"Error: nothing to score in {tmp_path / 'ec'}: each of the 1 pairs has the hole painted over "
        "(no ground truth there); use --sheet FILE to look at the fills"]
    sheet = tmp_path / "sheet.png"
    result = invoke(*args, "--sheet", sheet)
    assert result.exit_code == 2 and sheet.stat().st_size > 0  # the sheet asked for, and still no figures
    assert f"only the contact sheet was written: {sheet}" in result.output.strip().splitlines()[-1]


def test_eval_inpaint_help_says_biharmonic_needs_scikit_image(invoke):
    help_text = " ".join(invoke("eval", "inpaint", "--help").output.split())
    assert "NS and (when scikit-image is installed) biharmonic fills" in help_text


# --- the shipped model ---------------------------------------------------------------


def test_shipped_weights_verify_load_and_fit_the_budget():
    spec = model_spec(name=INPAINT_MODEL_NAME)
    card = spec.card()
    assert sha256_file(spec.weights) == card["sha256"]
    assert card["parameters"] <= 6_000_000
    assert card["training"]["steps"] > 0 and card["training"]["commands"]
    assert isinstance(load_inpainter("cpu"), InpaintVAE)


def test_shipped_model_beats_a_flat_fill(photo):
    mask = box_mask(*photo.shape[-2:], 60, 80, 40)
    out = inpaint_vae(photo, mask, load_inpainter("cpu"))
    hole = mask.expand_as(photo) > 0.5
    flat = photo.clone()
    flat[hole] = photo[~hole].mean()
    assert (out[hole] - photo[hole]).abs().mean() < (flat[hole] - photo[hole]).abs().mean()


def test_pipeline_refuses_a_mask_stage_after_samples_widen_the_image(tiny_weights, photo):
    from imgedit.pipeline import Pipeline

    with pytest.raises(UsageError, match=r"^stage 2 \(inpaint\) needs the mask, but stage 1 \(inpaint.vae\) changes the image size"):
        Pipeline.parse(f"inpaint samples=2 weights={tiny_weights} | inpaint method=telea")
    Pipeline.parse(f"inpaint samples=1 weights={tiny_weights} | inpaint method=telea")  # one fill keeps the size
    built = Pipeline.parse(f"inpaint samples=2 weights={tiny_weights}").build(device="cpu")
    out = built.apply(photo, box_mask(*photo.shape[-2:], 10, 10, 20))
    assert out.shape == (1, 3, photo.shape[-2], 2 * photo.shape[-1])


def test_bf16_on_the_cpu_keeps_known_pixels_and_stays_near_the_fp32_fill(tiny_weights, photo, monkeypatch):
    from imgedit import devices
    from imgedit.pipeline import Pipeline

    monkeypatch.setattr(devices, "cpu_has_bf16", lambda: True)  # autocast runs (emulated) on any CPU
    mask = box_mask(*photo.shape[-2:], 50, 60, 40)
    image = (photo * 65535).round() / 65535  # a 16-bit source: bf16 could not hold its known pixels
    # copies: apply hands the image to the first stage itself, and the inpainter fills it in place
    full = Pipeline.parse(f"inpaint weights={tiny_weights}").build("cpu", "fp32").apply(image.clone(), mask)
    half = Pipeline.parse(f"inpaint weights={tiny_weights}").build("cpu", "bf16").apply(image.clone(), mask)
    known = mask.expand_as(image) < 0.5
    assert half.dtype == torch.float32 and torch.equal(half[known], image[known])
    assert not torch.equal(half, full)  # it did run in bf16
    assert (half - full).abs().max() < 4 / 255


def test_samples_side_by_side_keep_the_alpha_of_each_panel(tmp_path, invoke, tiny_weights):
    rgba = np.dstack([smooth_rgb(48, 64), np.full((48, 64), 255, np.uint8)])
    rgba[10:20, 10:20, 3] = 0  # the hole
    Image.fromarray(rgba).save(tmp_path / "cut.png")
    result = invoke("inpaint", tmp_path / "cut.png", "-o", tmp_path / "cut-out.png", "--weights", tiny_weights,
                    "--samples", "2", "--seed", "1")
    assert result.exit_code == 0, result.output
    out = np.asarray(Image.open(tmp_path / "cut-out.png"))
    assert out.shape == (48, 128, 4) and out[..., 3].min() == 255  # the hole is filled and visible in both panels

    rgba = np.dstack([smooth_rgb(48, 64), np.full((48, 64), 255, np.uint8)])
    rgba[5:15, 54:, 3] = 0  # transparent at the right edge, kept: the hole comes from a mask file
    Image.fromarray(rgba).save(tmp_path / "edge.png")
    mask = np.zeros((48, 64), np.uint8)
    mask[30:40, 10:20] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    result = invoke("inpaint", tmp_path / "edge.png", "--mask", tmp_path / "mask.png", "-o", tmp_path / "edge-out.png",
                    "--weights", tiny_weights, "--samples", "3")
    assert result.exit_code == 0, result.output
    alpha = np.asarray(Image.open(tmp_path / "edge-out.png"))[..., 3]
    assert np.array_equal(alpha, np.tile(rgba[..., 3], (1, 3)))  # per panel, nothing stretched over the seams


@pytest.mark.parametrize("seed", ["-1", "4294967296"])
def test_inpaint_seeds_outside_32_bits_are_refused(invoke, tmp_path, seed):
    from PIL import Image

    Image.new("RGB", (32, 32)).save(tmp_path / "p.png")
    result = invoke("inpaint", tmp_path / "p.png", "--mask-box", "4,4,8,8", "--seed", seed, "-o", tmp_path / "o.png")
    assert result.exit_code == 2 and f"Invalid value for '--seed': {seed} is not in the range 0<=x<=4294967295." in result.output, result.output
    assert not (tmp_path / "o.png").exists()


def test_eval_progress_in_a_log_file_is_lines_not_a_redrawn_bar(tmp_path, invoke, tiny_weights, monkeypatch):
    from imgedit.verbs import StageProgress

    monkeypatch.setattr(StageProgress, "interval", 0.0)  # a line per image instead of one per 10 s
    rng = np.random.default_rng(1)
    hole = np.zeros((48, 48), bool)
    hole[10:30, 12:36] = True
    for i in range(2):
        write_pair(tmp_path / "pairs" / "s", f"im{i}", rng.integers(0, 255, (48, 48, 3), dtype=np.uint8), hole, "white")
    result = invoke("eval", "inpaint", "--pairs", tmp_path / "pairs", "--hole-color", "white", "--weights", tiny_weights, "--no-baselines")
    assert result.exit_code == 0, result.output
    assert "\r" not in result.stderr  # CliRunner's stderr is no terminal: no carriage-return bar in the log
    assert "eval inpaint: 2/2 images (100%)" in result.stderr


def test_no_method_scored_by_eval_sees_the_truth_under_the_hole():
    # OpenCV's fills read hole pixels at the border; a method returning its input would have scored perfectly
    image = torch.from_numpy(smooth_rgb(32, 32, seed=3)).permute(2, 0, 1)[None].float() / 255
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., :8, 10:20] = 1  # at the top border
    case = synthetic_cases([(Path("a.png"), image)], ["thin"], 0)[0]
    case.mask = mask
    seen = []
    row = evaluate([case], {"echo": lambda given, hole: seen.append(given) or given})[0]
    assert bool((seen[0][mask.expand_as(image) > 0.5] == 0).all())
    assert row.hole_psnr < 40  # the hole's truth was not handed back


def test_classical_baselines_come_from_the_registry_not_another_plugins_code(monkeypatch):
    import imgedit.registry
    from imgedit_vae.evaluate_denoise import baseline_methods

    assert {"telea", "ns"} <= set(classical_methods()) and "nlm" in baseline_methods()
    empty = type("Empty", (), {"methods": lambda self, name: []})()
    monkeypatch.setattr(imgedit.registry, "get_registry", lambda: empty)  # imgedit_classical left out
    assert not {"telea", "ns"} & set(classical_methods()) and "nlm" not in baseline_methods()


def test_grain_is_measured_on_the_known_pixels_around_the_hole():
    from imgedit_vae.grain import grain_level

    torch.manual_seed(0)
    smooth = torch.nn.functional.interpolate(torch.rand(1, 3, 6, 8), size=(96, 128), mode="bicubic").clamp(0.1, 0.9)
    noisy = (smooth + torch.randn(smooth.shape) * 10 / 255).clamp(0, 1)
    known = np.ones((96, 128), bool)
    known[30:70, 40:90] = False
    holed = noisy.clone()
    holed[..., 30:70, 40:90] = torch.rand(1, 3, 40, 50)  # whatever the hole holds is not measured
    level = grain_level(holed, known)
    assert level.shape == (3,) and torch.allclose(level, torch.full((3,), 10.0), atol=1.5), level
    assert float(grain_level(smooth, known).max()) < 1.5  # a clean photo: next to no grain
    assert float(grain_level(noisy, np.zeros((96, 128), bool)).max()) == 0  # nothing known: nothing measured


def test_grain_matches_the_fill_to_a_noisy_photo_keeping_known_pixels_and_seeds(tiny, photo):
    from imgedit.noise import estimate_sigma

    torch.manual_seed(1)
    noisy = (photo + torch.randn(photo.shape) * 12 / 255).clamp(0, 1)
    mask = box_mask(*photo.shape[-2:], 60, 80, 64)
    plain = inpaint_vae(noisy, mask, tiny)
    grainy = inpaint_vae(noisy, mask, tiny, grain=True)
    hole = mask.expand_as(noisy) > 0.5
    assert torch.equal(grainy[~hole], noisy[~hole])  # known pixels bit for bit
    inside = (slice(None), slice(None), slice(64, 120), slice(84, 140))
    assert float(estimate_sigma(plain[inside])) < 4 < 8 < float(estimate_sigma(grainy[inside])) < 16
    assert torch.equal(inpaint_vae(noisy, mask, tiny, grain=True), grainy)  # the same command, the same grain
    assert not torch.equal(inpaint_vae(noisy, mask, tiny, seed=3, grain=True)[hole],
                           inpaint_vae(noisy, mask, tiny, seed=4, grain=True)[hole])
    gray = noisy.mean(1, keepdim=True).expand_as(noisy).contiguous()
    out = inpaint_vae(gray, mask, tiny, grain=True)
    assert torch.equal(out[:, 0], out[:, 1]) and torch.equal(out[:, 1], out[:, 2])  # grayscale stays gray


def test_cli_grain_option(tmp_path, invoke, tiny_weights, photo):
    rgb = (photo[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    result = invoke("inpaint", tmp_path / "a.png", "--mask-box", "60,50,40,40", "--weights", tiny_weights, "--grain",
                    "-o", tmp_path / "out.png")
    assert result.exit_code == 0, result.output
    result = invoke("run", "-p", f"inpaint grain=true weights={tiny_weights}", tmp_path / "a.png", "--mask-box",
                    "60,50,40,40", "-o", tmp_path / "run.png")
    assert result.exit_code == 0 and (tmp_path / "run.png").read_bytes() == (tmp_path / "out.png").read_bytes()


def test_eval_inpaint_warns_when_the_images_are_the_models_training_data(tmp_path, invoke):
    # eval denoise and eval inpaint had no such check: the card's training photos scored without a word
    torch.manual_seed(0)
    train = tmp_path / "train"
    smooth_images(train, count=1, height=48, width=48)
    weights = tmp_path / "w" / "mine.safetensors"
    save_weights(InpaintVAE(TINY).state_dict(), weights, {"name": "mine", "model_config": TINY.to_dict(),
                                                          "training": {"data": [str(train)]}})
    result = invoke("eval", "inpaint", "--data", train, "--masks", "thin", "--weights", weights, "--no-baselines")
    assert result.exit_code == 0, result.output
    assert f"Warning: the evaluation images are the model's training data ({train})" in result.output
    (tmp_path / "eval").mkdir()
    smooth_images(tmp_path / "eval", count=1, height=48, width=48)
    result = invoke("eval", "inpaint", "--data", tmp_path / "eval", "--masks", "thin", "--weights", weights,
                    "--no-baselines")
    assert result.exit_code == 0 and "training data" not in result.output
