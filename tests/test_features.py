"""The random-feature ensemble that paces morphs: shape, per-network
scale, determinism, and that it leaves out the evaluation's network."""

import torch

from imgedit.features import ENSEMBLE_SEEDS, FEATURE_SEED, FeatureNet, ensemble_features


def test_ensemble_leaves_out_the_evaluation_network():
    assert FEATURE_SEED not in ENSEMBLE_SEEDS and len(set(ENSEMBLE_SEEDS)) == len(ENSEMBLE_SEEDS) >= 2


def test_ensemble_blocks_are_each_networks_features_scaled_to_mean_norm_one():
    images = torch.rand(4, 3, 40, 40, generator=torch.Generator().manual_seed(0))
    f = ensemble_features(images, seeds=(1, 2))
    assert f.shape == (4, 2 * 736)
    for k, seed in enumerate((1, 2)):
        block = f[:, 736 * k : 736 * (k + 1)]
        assert abs(block.norm(dim=1).mean().item() - 1) < 1e-5
        raw = FeatureNet(seed)(images)
        assert torch.allclose(block * raw.norm(dim=1).mean(), raw, atol=1e-5)  # the same features, rescaled
    assert torch.equal(ensemble_features(images, seeds=(1, 2)), f)  # fixed by the seeds


def test_ensemble_distance_grows_with_the_change():
    base = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    other = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    f = ensemble_features(torch.cat([base, 0.9 * base + 0.1 * other, 0.5 * base + 0.5 * other]))
    assert 0 < (f[1] - f[0]).norm() < (f[2] - f[0]).norm()
