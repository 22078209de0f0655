"""The GAN metrics: 0 (or below the floor) for identical sets, growing for
blurred or shifted ones; the pieces (pyramid, Gaussian baseline, fixed
features) on known answers; ``imgedit eval gan`` end to end."""

import json

import pytest
import torch

from imgedit_gan import metrics as M

from conftest import blob_images, save_tiny_gan


def blobs(n, seed, size=32):
    """Soft blobs of random colour and place over faint noise, (n, 3, size, size) in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    y, x = torch.meshgrid(torch.arange(size).float(), torch.arange(size).float(), indexing="ij")
    centre = torch.rand(n, 2, 1, 1, generator=g) * size * 0.5 + size * 0.25
    colour = torch.rand(n, 3, 1, 1, generator=g) * 0.8 + 0.2
    blob = torch.exp(-((y - centre[:, :1]) ** 2 + (x - centre[:, 1:]) ** 2) / (size * 0.8))  # (n, 1, size, size)
    return (0.1 + 0.7 * blob * colour + 0.1 * torch.rand(n, 3, size, size, generator=g)).clamp(0, 1)


@pytest.fixture(scope="module")
def scores():
    real, other = blobs(48, 0), blobs(48, 1)
    sets = {"same": real, "floor": other, "blurred": M.pyr_up(M.pyr_down(other)), "shifted": (other * 0.6 + 0.3).clamp(0, 1)}
    return M.evaluate(real, sets, seed=0, baseline="shifted")


def test_identical_sets_score_zero(scores):
    same = scores["same"]
    assert same["swd_x1e3"] == {32: 0.0, 16: 0.0} and same["swd_avg_x1e3"] == 0.0
    assert same["diversity"] == pytest.approx(1.0)
    assert same["kid_x1e3"] <= scores["floor"]["kid_x1e3"]  # the unbiased estimate is <= 0 here


def test_blur_raises_swd_at_the_fine_level(scores):
    assert scores["blurred"]["swd_x1e3"][32] > 3 * scores["floor"]["swd_x1e3"][32]
    assert scores["blurred"]["swd_avg_x1e3"] > scores["floor"]["swd_avg_x1e3"]


def test_a_colour_shift_raises_kid_and_lowers_diversity(scores):
    # SWD normalises each set's colour channels (as ProGAN), so the shift is for KID to see
    assert scores["shifted"]["kid_x1e3"] > 50 * max(scores["floor"]["kid_x1e3"], 1.0)
    assert scores["shifted"]["diversity"] < 0.8


def test_kid_is_compared_with_the_baseline_subset_by_subset(scores):
    assert "kid_below_baseline" not in scores["shifted"]  # the baseline itself
    assert scores["same"]["kid_below_baseline"] == 1.0 and scores["floor"]["kid_below_baseline"] == 1.0
    a, b = blobs(40, 5), blobs(40, 6)
    # a set against itself as the baseline is never below it
    assert M.evaluate(a, {"b": b, "copy": b.clone()}, seed=1, baseline="b")["copy"]["kid_below_baseline"] == 0.0
    # the subsets of the reference are shared: the paired values differ only by the candidates
    fa, fb = M.features(a), M.features(b)
    x, y = M.kid_subsets(fb, fa, seed=3), M.kid_subsets(fb.clone(), fa, seed=3)
    assert x.shape == (M.KID_SUBSETS,) and (x == y).all()
    assert M.kid(fb, fa, seed=3) == (float(x.mean()), float(x.std()))


def test_same_images_same_numbers():
    a, b = blobs(16, 2), blobs(16, 3)
    assert M.evaluate(a, {"b": b}, seed=5) == M.evaluate(a, {"b": b}, seed=5)


def test_laplacian_pyramid_reconstructs_the_image():
    images = blobs(2, 4, size=64) * 255
    pyramid = M.laplacian_pyramid(images)
    assert [p.shape[-1] for p in pyramid] == [64, 32, 16] and M.swd_levels(images) == [64, 32, 16]
    rebuilt = pyramid[-1]
    for level in reversed(pyramid[:-1]):
        rebuilt = M.pyr_up(rebuilt) + level
    assert torch.allclose(rebuilt, images, atol=1e-3)
    assert M.swd_levels(blobs(1, 0, size=8)) == [8]  # small images: one level


def test_descriptors_are_normalised_patches():
    levels = M.swd_descriptors(blobs(4, 0), seed=1)
    assert [d.shape for d in levels] == [(4 * 128, 147)] * 2
    per_channel = levels[0].reshape(-1, 3, 49).transpose(1, 0, 2).reshape(3, -1)
    assert per_channel.mean(axis=1) == pytest.approx([0, 0, 0], abs=1e-4)
    assert per_channel.std(axis=1) == pytest.approx([1, 1, 1], abs=1e-3)


def test_feature_net_is_fixed_by_its_seed():
    images = blobs(3, 0)
    assert torch.equal(M.features(images), M.features(images, M.FeatureNet()))
    assert not torch.equal(M.features(images), M.features(images, M.FeatureNet(seed=1)))
    assert M.features(images).shape == (3, 32 + 64 + 128 + 512)


def test_pca_gaussian_matches_mean_and_spread():
    real = blobs(40, 0, size=16)
    fake = M.pca_gaussian(real, 400, seed=0)
    assert fake.shape == (400, 3, 16, 16) and 0 <= fake.min() and fake.max() <= 1
    assert (fake.mean(0) - real.mean(0)).abs().mean() < 0.01
    assert float(fake.std(0).mean()) == pytest.approx(float(real.std(0).mean()), rel=0.15)
    assert torch.equal(fake, M.pca_gaussian(real, 400, seed=0))


def test_eval_command_reports_every_set(tmp_path, invoke):
    spec = save_tiny_gan(tmp_path / "w" / "tiny.safetensors", training={"data": [], "holdout": {"files": ["03.png", "07.png"]}})
    real = blob_images(tmp_path / "real", count=12, size=16)
    result = invoke("eval", "gan", "--model", spec.weights, "--real", real, "--n", "4", "--json", "--record")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["n"] == 4 and set(report["results"]) == {"real (floor)", "model", "gaussian (baseline)"}
    model = report["results"]["model"]
    assert set(model) == {"swd_x1e3", "swd_avg_x1e3", "kid_x1e3", "kid_std_x1e3", "diversity", "kid_below_baseline"}
    assert 0 <= model["kid_below_baseline"] <= 1 and "kid_below_baseline" not in report["results"]["gaussian (baseline)"]
    # an untrained generator is further from real images than the other half of them
    assert model["swd_avg_x1e3"] > report["results"]["real (floor)"]["swd_avg_x1e3"]
    assert json.loads(spec.card_path.read_text())["metrics"]["eval_gan"]["n"] == 4

    result = invoke("eval", "gan", "--model", spec.weights, "--real", real, "--n", "4", "--held-out")
    assert result.exit_code == 2 and "need at least 4 real images, found 2" in result.output
    result = invoke("eval", "gan", "--model", spec.weights, "--real", real, "--n", "3")
    assert result.exit_code == 0 and "SWD16" in result.output and "gaussian (baseline)" in result.output
    assert "KID<base" in result.output


def test_kid_spread_is_real_when_the_sets_are_smaller_than_a_subset():
    # sets of 60 rows, far below KID_SUBSET_SIZE: subsets of the whole set would all be the same set
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(60, 8, generator=g), torch.randn(60, 8, generator=g) + 0.5
    mean, spread = M.kid(a, b)
    assert spread > 0 and mean > 0
    again = M.kid(a, b)
    assert again == (mean, spread)  # seeded subsets
    whole = M._poly_kernel(a, a).double(), M._poly_kernel(b, b).double(), M._poly_kernel(a, b).double()
    n = len(a)
    unbiased = ((whole[0].sum() - whole[0].trace()) + (whole[1].sum() - whole[1].trace())) / (n * (n - 1)) - 2 * whole[2].mean()
    assert mean == pytest.approx(float(unbiased), abs=3 * spread)  # subsets estimate the same MMD^2


def test_table_columns_stay_apart_for_negative_and_wide_kid():
    swd = {64: 70.7, 32: 65.41, 16: 151.42}
    results = {
        "real (floor)": {"swd_x1e3": swd, "swd_avg_x1e3": 95.84, "kid_x1e3": -169.9, "kid_std_x1e3": 814.91,
                         "diversity": 1.025, "kid_below_baseline": 0.5},
        "gaussian (baseline)": {"swd_x1e3": swd, "swd_avg_x1e3": 10101.59, "kid_x1e3": -1394.62, "kid_std_x1e3": 1860.4,
                                "diversity": 1.408},
    }
    lines = M.format_table(results, "title").splitlines()
    assert lines[1].split() == ["set", "SWD64", "SWD32", "SWD16", "SWDavg", "KIDx1e3", "KID<base", "divers."]
    assert lines[2].split() == ["real", "(floor)", "70.70", "65.41", "151.42", "95.84", "-169.90+-814.91", "50%", "1.025"]
    assert lines[3].split() == ["gaussian", "(baseline)", "70.70", "65.41", "151.42", "10101.59", "-1394.62+-1860.40", "-",
                                "1.408"]
    assert len({len(line) for line in lines[1:]}) == 1  # right-aligned columns: every row as wide as the header


def test_record_keeps_held_out_figures_unless_overwrite(tmp_path, invoke):
    recorded = {"held_out": True, "n": 1000, "results": {"model": {"kid_x1e3": 1.0}}}
    spec = save_tiny_gan(tmp_path / "w" / "tiny.safetensors", training={"data": [], "holdout": {"files": ["03.png", "07.png"]}},
                         metrics={"eval_gan": recorded})
    before = spec.card_path.read_bytes()
    real = blob_images(tmp_path / "real", count=12, size=16)
    args = ("eval", "gan", "--model", spec.weights, "--real", real, "--n", "4")

    refused = invoke(*args, "--record")  # the audit's case: not held out, smaller n, over held-out figures
    assert refused.exit_code == 2 and refused.output.count("\n") == 1, refused.output
    assert refused.output.startswith("Error: --record:") and "held-out" in refused.output and "--overwrite" in refused.output
    assert spec.card_path.read_bytes() == before

    spec.card_path.write_text(json.dumps({**json.loads(before), "metrics": {"eval_gan": {**recorded, "held_out": False}}}))
    smaller = invoke(*args, "--record")  # same kind of figures, but over fewer images
    assert smaller.exit_code == 2 and "n=1000" in smaller.output and "n=4" in smaller.output, smaller.output
    assert json.loads(spec.card_path.read_text())["metrics"]["eval_gan"]["n"] == 1000

    assert invoke(*args, "--record", "--overwrite").exit_code == 0
    assert json.loads(spec.card_path.read_text())["metrics"]["eval_gan"]["n"] == 4
    assert invoke(*args, "--record").exit_code == 0  # as many images as recorded: fine
    alone = invoke(*args, "--overwrite")
    assert alone.exit_code == 2 and "needs --record" in alone.output


def test_record_refuses_a_card_in_an_installed_package(tmp_path, invoke, monkeypatch):
    import site
    import sysconfig

    spec = save_tiny_gan(tmp_path / "site-packages" / "imgedit_weights" / "tiny.safetensors")
    monkeypatch.setattr(sysconfig, "get_paths", lambda *a, **k: {"purelib": str(tmp_path / "site-packages")})
    monkeypatch.setattr(site, "getsitepackages", lambda *a: [])
    before = spec.card_path.read_bytes()
    real = blob_images(tmp_path / "real", count=12, size=16)
    refused = invoke("eval", "gan", "--model", spec.weights, "--real", real, "--n", "4", "--record", "--overwrite")
    assert refused.exit_code == 2 and refused.output.count("\n") == 1, refused.output
    assert "belongs to the installed imgedit package" in refused.output and "IMGEDIT_WEIGHTS" in refused.output
    assert spec.card_path.read_bytes() == before


def test_too_small_real_images_are_not_called_training_images(tmp_path, invoke):
    spec = save_tiny_gan(tmp_path / "w" / "tiny.safetensors")
    small = blob_images(tmp_path / "small", count=4, size=8)
    result = invoke("eval", "gan", "--model", spec.weights, "--real", small)
    assert result.exit_code == 2 and "no real images of at least 16x16 px" in result.output
    assert "training" not in result.output
