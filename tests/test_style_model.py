"""The style plugin's pieces on tiny tensors: the fast network, the applier
(odd sizes, strength, preserve-color, scale), the losses, the loss networks
(random with a seed, and VGG from a state dict saved in torchvision's file
layout), and per-image optimisation."""

import pytest
import torch

from imgedit.errors import ShapeError, UsageError
from imgedit_style.evaluate import StyleMeter, structure_kept
from imgedit_style.losses import StyleLossConfig, gram, mean_std, smooth, style_distance, style_targets
from imgedit_style.lossnet import LossNetConfig, build_loss_net, vgg_features, vgg_weights_path
from imgedit_style.model import StyleNet, StyleNetConfig, count_parameters
from imgedit_style.optimize import StyleObjective, optimise_image
from imgedit_style.stylize import (_opencv_resize, keep_colour, resize, rgb_to_ycbcr, run_network, stylise,
                                   working_size, ycbcr_to_rgb)

TINY_NET = StyleNetConfig(widths=(4, 8, 8), res_blocks=1)
TINY_LOSS_NET = LossNetConfig(widths=(8, 16), convs=1)


def tiny_net(seed=0):
    """An untrained tiny network whose output layers are not zero (a new network returns the photo)."""
    torch.manual_seed(seed)
    net = StyleNet(TINY_NET).eval()
    for layer in (net.to_rgb, net.from_photo):
        torch.nn.init.normal_(layer.weight, std=0.03)  # a clear change that stays inside the colour gamut
    return net


def smooth_photo(h=37, w=53, seed=0):
    """Mid-range colours (no channel near 0 or 1, so colour conversions need no clamping)."""
    g = torch.Generator().manual_seed(seed)
    y, x = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    base = torch.stack([0.3 + 0.4 * x, 0.3 + 0.4 * y, 0.5 - 0.2 * x * y])[None]
    return (base + 0.02 * torch.randn(1, 3, h, w, generator=g)).clamp(0.2, 0.8)


def test_default_network_is_small_keeps_the_size_and_starts_as_the_identity():
    net = StyleNet(StyleNetConfig())
    assert count_parameters(net) <= 500_000
    x = torch.rand(2, 3, 32, 48)
    assert torch.equal(net(x), x)  # training starts from perfect content
    out = tiny_net()(x)
    assert out.shape == (2, 3, 32, 48) and 0 <= out.min() and out.max() <= 1
    net = tiny_net().train()
    far = net(x * 4 - 2)  # mostly out of range: clamped, yet every pixel still has a gradient
    assert 0 <= far.min() and far.max() <= 1
    far.sum().backward()
    assert (net.to_rgb.weight.grad.abs() > 0).all()


@pytest.mark.parametrize("h, w", [(37, 53), (1, 1), (5, 7), (16, 9), (64, 33)])
def test_output_size_equals_input_size(h, w, device):
    image = torch.rand(1, 3, h, w, device=device)
    assert stylise(image, tiny_net().to(device)).shape == (1, 3, h, w)
    assert run_network(tiny_net().to(device), image).shape == (1, 3, h, w)


def test_strength_zero_returns_the_input_and_strength_blends():
    photo = smooth_photo()
    net = tiny_net()
    assert torch.equal(stylise(photo, net, strength=0.0), photo)
    full = stylise(photo, net, strength=1.0)
    half = stylise(photo, net, strength=0.5)
    assert torch.allclose(half, (photo + full) / 2, atol=1e-5)
    assert (full - photo).abs().mean() > 0.01


def test_preserve_color_keeps_the_chroma_of_the_input():
    photo = smooth_photo()
    net = tiny_net()
    plain, kept = stylise(photo, net), stylise(photo, net, preserve_color=True)
    chroma = lambda x: rgb_to_ycbcr(x)[:, 1:]  # noqa: E731
    assert (chroma(plain) - chroma(photo)).abs().mean() > 0.01  # the network does change colours
    assert torch.allclose(chroma(kept), chroma(photo), atol=2e-3)
    assert torch.allclose(rgb_to_ycbcr(kept)[:, :1], rgb_to_ycbcr(plain)[:, :1], atol=2e-3)  # its luminance is the style's
    half = stylise(photo, net, strength=0.5, preserve_color=True)
    assert torch.allclose(chroma(half), chroma(photo), atol=2e-3)


def test_colour_conversion_round_trips_and_keep_colour_is_identity_on_itself():
    x = torch.rand(2, 3, 8, 8)
    assert torch.allclose(ycbcr_to_rgb(rgb_to_ycbcr(x)), x, atol=1e-5)
    assert torch.allclose(keep_colour(x, x), x, atol=1e-5)


def test_scale_sets_the_working_size():
    assert working_size(3000, 2000, "auto", 1024) == (1024, 683)
    assert working_size(300, 200, "auto", 1024) == (300, 200)
    assert working_size(300, 200, 600, 1024) == (600, 400)
    photo = smooth_photo(40, 60)
    small = stylise(photo, tiny_net(), scale=30)
    assert small.shape == photo.shape
    assert not torch.allclose(small, stylise(photo, tiny_net(), scale=60))


def test_a_scale_over_the_pixel_limit_is_refused(monkeypatch):
    # scale=16384 on a 32 px photo worked at 268 MP (18 GB): past the limit a photo that size would meet
    from imgedit.errors import UsageError

    monkeypatch.setenv("IMGEDIT_MAX_PIXELS", "60000")
    assert working_size(32, 32, 240, 1024) == (240, 240)
    with pytest.raises(UsageError, match=r"working image at scale=256 would be 256x256 = 0.06554 MP, above the limit"):
        working_size(32, 32, 256, 1024)
    with pytest.raises(UsageError, match="above the limit"):
        stylise(smooth_photo(32, 32), tiny_net(), scale=256)


def torch_resize(image, size):
    """The resize as it was before OpenCV did it on the CPU: torch's area, or bicubic clamped."""
    if size[0] <= image.shape[-2] and size[1] <= image.shape[-1]:
        return torch.nn.functional.interpolate(image, size=size, mode="area")
    return torch.nn.functional.interpolate(image, size=size, mode="bicubic", align_corners=False).clamp(0, 1)


RESIZES = [((37, 53), (111, 160)), ((37, 53), (75, 53)), ((37, 53), (20, 200)), ((53, 37), (1000, 9)),  # enlarging
           ((36, 52), (12, 26)), ((45, 63), (15, 7)), ((37, 53), (1, 1)), ((37, 53), (37, 1)),  # whole blocks
           ((37, 53), (19, 27)), ((37, 53), (10, 52)),  # other sizes: torch's
           ((1, 1), (3, 2)), ((1, 3), (7, 1)), ((2, 3), (1, 1)), ((3, 2), (2, 2)), ((3, 1), (1, 5)), ((2, 2), (3, 3))]  # tiny


@pytest.mark.parametrize("source, size", RESIZES)
@pytest.mark.parametrize("layout", ["planar", "channels-last"])
def test_the_cpu_resize_is_torchs_within_a_level(source, size, layout):
    # OpenCV's cubic and whole-block area on CPU float32 must stay within one 8-bit level of torch's,
    # at the borders too (cubic: border replicated, pixel centres aligned as align_corners=False)
    random = torch.rand(2, 3, *source, generator=torch.Generator().manual_seed(1))
    for image in (random, smooth_photo(*source)):
        if layout == "channels-last":  # as imgedit.tensor.to_tensor gives a decoded photo
            image = image.contiguous(memory_format=torch.channels_last)
        out, ref = resize(image, size), torch_resize(image, size)
        assert out.shape == ref.shape and out.dtype == torch.float32
        assert (out.clamp(0, 1) - ref.clamp(0, 1)).abs().max() <= 1 / 255


@pytest.mark.parametrize("source, size", [s for s in RESIZES if not (s[1][0] <= s[0][0] and s[1][1] <= s[0][1])]
                         + [((36, 52), (12, 26)), ((37, 53), (1, 1)), ((3, 1), (1, 1))])
@pytest.mark.parametrize("channels", [1, 3, 4])
def test_opencv_resize_itself_matches_torch(source, size, channels):
    # _opencv_resize called directly, so that a fall back to torch in resize() cannot hide a mismatch;
    # one channel too (OpenCV gives it as (H, W)), and both layouts
    image = torch.rand(2, channels, *source, generator=torch.Generator().manual_seed(2))
    cubic = not (size[0] <= source[0] and size[1] <= source[1])
    ref = torch_resize(image, size)
    for x in (image, image.contiguous(memory_format=torch.channels_last)):
        out = _opencv_resize(x, size, cubic)
        out = out.clamp(0, 1) if cubic else out
        assert out.shape == ref.shape and (out - ref).abs().max() <= 1 / 255


def test_resize_keeps_torch_where_opencv_does_not_apply():
    x = torch.rand(1, 3, 9, 13, dtype=torch.float64)
    assert torch.equal(resize(x, (20, 31)), torch_resize(x, (20, 31)))  # another dtype: torch's, bit for bit
    x = torch.rand(1, 3, 9, 13, requires_grad=True)
    resize(x, (20, 31)).sum().backward()  # a gradient wanted: torch's, which has one
    assert x.grad is not None and x.grad.abs().sum() > 0
    x = torch.rand(1, 3, 9, 13)
    assert resize(x, (9, 13)) is x


def test_wrong_input_is_a_shape_error():
    with pytest.raises(ShapeError):
        stylise(torch.rand(3, 8, 8), tiny_net())
    with pytest.raises(ShapeError):
        stylise(torch.rand(1, 1, 8, 8), tiny_net())


def test_gram_and_mean_std_have_known_values():
    f = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(1, 1, 2, 2).repeat(1, 2, 1, 1)
    f[:, 1] *= 2
    assert torch.allclose(gram(f), torch.tensor([[[7.5, 15.0], [15.0, 30.0]]]))
    ms = mean_std(f)
    assert torch.allclose(ms[0, :2], torch.tensor([2.5, 5.0])) and torch.allclose(ms[0, 2:], torch.tensor([1.118034, 2.236068]))
    s = smooth(torch.randn(2, 5, 3, 3))
    assert torch.allclose(s.sum(dim=1), torch.ones(2, 3, 3))


def test_style_distance_is_zero_for_the_painting_itself_and_positive_otherwise():
    net = build_loss_net(TINY_LOSS_NET)
    painting, other = torch.rand(1, 3, 32, 32), smooth_photo(32, 32)
    for cfg in (StyleLossConfig(), StyleLossConfig(statistic="both", softmax=True)):
        targets = style_targets(net(painting).style, cfg)
        assert style_distance(net(painting).style, targets, cfg).item() < 1e-10
        assert style_distance(net(other).style, targets, cfg).item() > 0.01


def test_loss_network_is_deterministic_for_a_seed():
    a, b = build_loss_net(LossNetConfig(seed=5)), build_loss_net(LossNetConfig(seed=5))
    c = build_loss_net(LossNetConfig(seed=6))
    for (name, p), q, r in zip(a.state_dict().items(), b.state_dict().values(), c.state_dict().values()):
        assert torch.equal(p, q), name
        if name.endswith("weight"):
            assert not torch.equal(p, r), name
    x = torch.rand(1, 3, 32, 32)
    fa, fb = a(x), b(x)
    assert [t.shape[1] for t in fa.style] == [64, 128, 256, 512, 512]
    assert all(torch.equal(s, t) for s, t in zip(fa.style, fb.style)) and torch.equal(fa.content, fb.content)
    assert not any(p.requires_grad for p in a.parameters())


def test_gradients_reach_the_image():
    net = build_loss_net(TINY_LOSS_NET)
    x = torch.rand(1, 3, 16, 16, dtype=torch.float64, requires_grad=True)
    net = net.double()
    cfg = StyleLossConfig()
    targets = style_targets(net(torch.rand(1, 3, 16, 16, dtype=torch.float64)).style, cfg)
    assert torch.autograd.gradcheck(lambda t: style_distance(net(t).style, targets, cfg), (x,), eps=1e-6, atol=1e-4)


def test_unknown_loss_network_is_a_usage_error():
    with pytest.raises(UsageError, match="known: random, vgg16, vgg19"):
        build_loss_net("resnet")


def save_torchvision_vgg(kind, torch_home, seed=0):
    """A randomly initialised VGG saved where and how torchvision keeps its ImageNet weights."""
    torch.manual_seed(seed)
    features, _ = vgg_features(kind)
    state = {f"features.{k}": v for k, v in features.state_dict().items()}
    state["classifier.0.weight"] = torch.zeros(4, 4)  # the classifier is in torchvision's file too; it is ignored
    path = torch_home / "hub" / "checkpoints" / vgg_weights_path(kind).name
    path.parent.mkdir(parents=True)
    torch.save(state, path)
    return state


def test_vgg_path_loads_a_locally_saved_state_dict(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    assert vgg_weights_path("vgg16") == tmp_path / "hub" / "checkpoints" / "vgg16-397923af.pth"
    state = save_torchvision_vgg("vgg16", tmp_path)
    net = build_loss_net("vgg16")
    assert torch.equal(net.features[28].weight, state["features.28.weight"])  # the last conv of torchvision's layout
    f = net(torch.rand(1, 3, 32, 32))
    assert [t.shape[1] for t in f.style] == [64, 128, 256, 512] and f.content.shape[1] == 128


def test_vgg_missing_or_wrong_file_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(UsageError, match=str(tmp_path / "hub" / "checkpoints" / "vgg19-dcbb9e9d.pth")):
        build_loss_net("vgg19")
    path = vgg_weights_path("vgg16")
    path.parent.mkdir(parents=True)
    torch.save({"features.0.weight": torch.zeros(3)}, path)
    with pytest.raises(UsageError, match="not a torchvision vgg16 state dict"):
        build_loss_net("vgg16")


def test_optimisation_lowers_the_style_distance_and_keeps_the_size():
    net = build_loss_net(TINY_LOSS_NET)
    painting = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    photo = smooth_photo(24, 20)
    objective = StyleObjective(net, painting, StyleLossConfig())
    seen = []
    out = optimise_image(photo, objective, steps=15, lr=0.05, on_step=lambda s, m: seen.append(m["style"]))
    assert out.shape == photo.shape and 0 <= out.min() and out.max() <= 1
    assert len(seen) == 15 and seen[-1] < 0.5 * seen[0]


def test_measures_of_the_evaluation():
    photo = smooth_photo(48, 48)
    blocks = torch.nn.functional.interpolate(torch.rand(1, 3, 6, 6, generator=torch.Generator().manual_seed(0)), scale_factor=8.0)
    assert structure_kept(photo, photo).item() == pytest.approx(1.0, abs=1e-5)
    assert structure_kept(blocks, 1 - blocks).item() < -0.2  # light and dark swapped
    noise = torch.randn(blocks.shape, generator=torch.Generator().manual_seed(1))
    assert structure_kept(blocks, blocks + 0.03 * noise).item() > 0.95  # fine texture is blurred away
    meter = StyleMeter(torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(2)), TINY_LOSS_NET, seed=99)
    assert meter.net.features[0].weight.shape[0] == 8  # the recipe's architecture, another seed
    assert not torch.equal(meter.net.features[0].weight, build_loss_net(TINY_LOSS_NET).features[0].weight)
    assert meter(photo).shape == (1,)
