"""The latent-model protocol: a plugin registers a latent model, the host
loads it by name, refuses unknown names and objects that do not implement
the protocol, keeps the first of two registrations; spherical interpolation."""

import json

import pytest
import torch

from imgedit import registry
from imgedit.errors import UsageError
from imgedit.latents import LatentModel, LatentModelSpec, interpolate, latent_model_names, load_latent_model


class LinearLatentModel:
    """A 4-d latent decoded linearly to 3x4x4 images: encode is exact."""

    latent_shape = (4,)
    image_size = (4, 4)
    gaussian = True

    def __init__(self, device):
        self.device = torch.device(device)
        self.basis = (0.1 * torch.randn(4, 48, generator=torch.Generator().manual_seed(0))).to(self.device)

    def sample_latents(self, n, seed):
        return torch.randn(n, 4, generator=torch.Generator().manual_seed(seed)).to(self.device)

    def decode(self, z):
        return (0.5 + z @ self.basis).view(-1, 3, 4, 4)

    def encode(self, images):
        return torch.linalg.lstsq(self.basis.T, (images.flatten(1) - 0.5).T).solution.T


@pytest.fixture
def linear_plugin(test_plugin):
    test_plugin("linear_latents", register_latent_models=lambda register: register(
        LatentModelSpec("linear", "a linear toy", load=LinearLatentModel)))


def test_registered_latent_model_loads_by_name_and_round_trips(linear_plugin, device):
    assert "linear" in latent_model_names()
    model = load_latent_model("linear", device)
    assert isinstance(model, LatentModel)
    z = model.sample_latents(5, seed=3)
    assert z.shape == (5, *model.latent_shape) and z.device.type == device.type
    assert torch.equal(z, model.sample_latents(5, seed=3)) and not torch.equal(z, model.sample_latents(5, seed=4))
    images = model.decode(z)
    assert images.shape == (5, 3, *model.image_size)
    assert torch.allclose(model.encode(images), z, atol=1e-4)


def test_unknown_name_lists_the_known_models(linear_plugin):
    with pytest.raises(UsageError, match=r"unknown latent model 'nope' \(known: .*linear"):
        load_latent_model("nope", "cpu")


def test_object_without_the_protocol_is_refused(test_plugin):
    test_plugin("half_done", register_latent_models=lambda register: register(
        LatentModelSpec("half", "decode only", load=lambda device: type("Half", (), {"decode": None})())))
    with pytest.raises(UsageError, match="half_done does not implement.*missing: latent_shape.*known: .*half"):
        load_latent_model("half", "cpu")


def test_second_registration_of_a_name_is_a_problem_of_its_plugin(linear_plugin, test_plugin, invoke):
    test_plugin("copycat", register_latent_models=lambda register: register(
        LatentModelSpec("linear", "another", load=LinearLatentModel)))
    assert registry.get_registry().latent_models["linear"].plugin == "linear_latents"
    rows = {row["name"]: row for row in json.loads(invoke("plugins", "--json").stdout)}
    assert rows["linear_latents"]["latent_models"] == ["linear"] and rows["linear_latents"]["status"] == "ok"
    assert "latent model 'linear' is already registered by linear_latents" in rows["copycat"]["errors"][0]


def test_slerp_stays_on_the_sphere_and_hits_the_ends():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(3, 64, generator=g), torch.randn(3, 64, generator=g)
    b = b * (a.norm(dim=1, keepdim=True) / b.norm(dim=1, keepdim=True))  # same radius
    assert torch.allclose(interpolate(a, b, 0.0), a, atol=1e-5) and torch.allclose(interpolate(a, b, 1.0), b, atol=1e-5)
    middle = interpolate(a, b, 0.5)
    assert torch.allclose(middle.norm(dim=1), a.norm(dim=1), rtol=1e-4)
    assert (interpolate(a, b, 0.5, spherical=False).norm(dim=1) < a.norm(dim=1)).all()  # a chord cuts inside
    assert torch.allclose(interpolate(a, a, 0.3), a, atol=1e-5)  # parallel: no division by zero


# --- seeds, truncation and the checks the latent verbs share ----------------------------


@pytest.mark.parametrize("seed", [-1, 2**32, 10**20])
def test_seeds_outside_32_bits_are_refused(seed):
    # torch keeps only the low 32 bits: -1 would draw as 2**32 - 1, 2**32 as 0, 10**20 overflows
    from imgedit.latents import gaussian_latents

    with pytest.raises(UsageError, match=r"from 0 to 4294967295"):
        gaussian_latents(1, 4, seed)


def test_the_ends_of_the_seed_range_draw_distinct_latents():
    from imgedit.latents import MAX_SEED, gaussian_latents

    assert not torch.equal(gaussian_latents(2, 4, 0), gaussian_latents(2, 4, MAX_SEED))


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -0.1, 1.5])
def test_truncation_outside_0_1_and_nan_are_refused(value):
    from imgedit.latents import check_truncation

    with pytest.raises(UsageError, match="truncation must be in"):
        check_truncation(value)


def test_a_misspelt_latent_model_gets_a_suggestion(invoke):
    result = invoke("sample", "--model", "faces64-gam", "-n", "1", "-o", "unused")
    assert result.exit_code == 2
    assert "unknown latent model 'faces64-gam'" in result.output and "did you mean faces64-gan?" in result.output
