"""The latent path of a morph: frame counts and order, keyframes hit
exactly, loops that do not repeat a frame, easing, slerp keeping norms."""

import pytest
import torch

from imgedit.errors import UsageError
from imgedit.features import ensemble_features
from imgedit.latents import interpolate
from imgedit_interp.morph import cross_fade, frame_count, path_latents, transition_times


def keys(k=3, d=6, seed=0):
    return torch.randn(k, d, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("k,frames,loop", [(2, 16, False), (3, 5, False), (3, 5, True), (2, 2, True), (4, 9, False)])
def test_frame_count_and_keyframes_in_order(k, frames, loop):
    z = keys(k)
    path = path_latents(z, frames, loop=loop)
    assert len(path) == frame_count(k, frames, loop) == ((k if loop else k - 1) * (frames - 1) + (0 if loop else 1))
    for i in range(k):
        assert torch.equal(path[i * (frames - 1)], z[i])  # keyframe i sits exactly at its frame
    if loop:
        assert not torch.equal(path[-1], z[0])  # the first frame is not repeated at the end
        assert torch.allclose(interpolate(z[-1:], z[:1], (frames - 2) / (frames - 1))[0], path[-1])
    else:
        assert torch.equal(path[-1], z[-1])


def test_frames_move_monotonically_from_one_key_to_the_next():
    a, b = torch.zeros(1, 4), torch.ones(1, 4)
    path = path_latents(torch.cat([a, b]), 6, spherical=False)
    assert torch.allclose(path[:, 0], torch.linspace(0, 1, 6))


def test_slerp_keeps_the_norm_of_equal_norm_latents():
    z = keys(2, 128)
    z = z / z.norm(dim=1, keepdim=True) * 11.3
    path = path_latents(z, 9, spherical=True)
    assert torch.allclose(path.norm(dim=1), torch.full((9,), 11.3), atol=1e-4)
    straight = path_latents(z, 9, spherical=False)
    assert straight.norm(dim=1)[4] < 11.3 * 0.9  # a straight line cuts inside the sphere


@pytest.mark.parametrize("ease", ["linear", "smooth", "sine"])
def test_easings_run_from_0_to_1_in_order(ease):
    t = transition_times(11, ease)
    assert t[0] == 0 and t[-1] == 1 and all(x < y for x, y in zip(t, t[1:]))
    if ease != "linear":
        assert t[1] < 0.1 / 2  # slow near the keyframes
    assert t[5] == pytest.approx(0.5)


def test_bad_arguments_are_usage_errors():
    with pytest.raises(UsageError, match="at least 2 keyframes"):
        path_latents(keys(1), 5)
    with pytest.raises(UsageError, match="--frames must be at least 2"):
        path_latents(keys(2), 1)
    with pytest.raises(UsageError, match="unknown easing 'bounce'"):
        path_latents(keys(2), 5, ease="bounce")


def test_cross_fade_blends_pixels_linearly():
    images = torch.stack([torch.zeros(3, 4, 4), torch.ones(3, 4, 4)])
    fade = cross_fade(images, 5)
    assert fade.shape == (5, 3, 4, 4) and torch.allclose(fade[2], torch.full((3, 4, 4), 0.5))


def test_even_pacing_makes_equal_image_steps():
    # a decoder that changes little over the first 80% of the way and a lot after
    def decode(z):
        return torch.where(z < 0.8, z * 0.1, 0.08 + (z - 0.8) * 4.6).expand(-1, 12)

    keys = torch.tensor([[0.0], [1.0]])
    path = path_latents(keys, 6, spherical=False, ease="even", decode=decode, measure=lambda x: x)
    steps = (decode(path)[1:] - decode(path)[:-1]).norm(dim=1)
    assert torch.equal(path[0], keys[0]) and torch.equal(path[-1], keys[1]) and len(path) == 6
    assert steps.max() / steps.min() < 1.05
    linear = path_latents(keys, 6, spherical=False)
    linear_steps = (decode(linear)[1:] - decode(linear)[:-1]).norm(dim=1)
    assert linear_steps.max() / linear_steps.min() > 10


def test_even_pacing_by_default_makes_equal_steps_in_the_feature_ensemble():
    # images that change little over most of the way, then a lot: a blend of two textures at z**4
    g = torch.Generator().manual_seed(3)
    a, b = torch.rand(1, 3, 32, 32, generator=g), torch.rand(1, 3, 32, 32, generator=g).round()

    def decode(z):
        s = z[:, :1, None, None] ** 4
        return (1 - s) * a + s * b

    keys = torch.tensor([[0.0], [1.0]])
    paced = ensemble_features(decode(path_latents(keys, 7, spherical=False, ease="even", decode=decode)))
    steps = (paced[1:] - paced[:-1]).norm(dim=1)  # one call: its per-network scale is shared by the frames
    assert steps.max() / steps.min() < 1.15
    linear = ensemble_features(decode(path_latents(keys, 7, spherical=False)))
    linear_steps = (linear[1:] - linear[:-1]).norm(dim=1)
    assert linear_steps.max() / linear_steps.min() > 20


def test_even_pacing_of_identical_keyframes_is_still_in_order():
    path = path_latents(torch.ones(2, 3), 5, ease="even", decode=lambda z: z.clone(), measure=lambda x: x)
    assert len(path) == 5 and torch.allclose(path, torch.ones(5, 3))
