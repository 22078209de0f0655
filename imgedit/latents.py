"""The latent-model protocol: generative models that map latent vectors to
images and back (a GAN's generator, a VAE's decoder), so that verbs and
other plugins can sample, interpolate and edit with any of them without
knowing which plugin trained it.

A plugin registers a :class:`LatentModelSpec` through the
``register_latent_models`` hook; :func:`load_latent_model` builds it by name.
Cheap to import: torch loads only when a model does.

    >>> model = load_latent_model("faces64-gan")             # device="auto": a GPU if there is one
    >>> z = model.sample_latents(8, seed=0)               # (8, *model.latent_shape)
    >>> images = model.decode(z)                          # (8, 3, H, W) in [0, 1]
    >>> middle = model.decode(interpolate(z[:1], z[1:2], 0.5, model.gaussian))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Protocol, runtime_checkable

from imgedit.errors import UsageError

if TYPE_CHECKING:  # pragma: no cover - typing only, keeps start-up cheap
    import torch

__all__ = [
    "LatentModel",
    "LatentModelSpec",
    "MAX_SEED",
    "check_seed",
    "check_truncation",
    "gaussian_latents",
    "interpolate",
    "latent_model_names",
    "load_latent_model",
    "load_latent_model_argument",
]


@runtime_checkable
class LatentModel(Protocol):
    """What a loaded latent model offers.

    Attributes:
        latent_shape: shape of one latent, e.g. ``(128,)``.
        image_size: ``(H, W)`` of the images it decodes to.
        gaussian: latents are distributed N(0, I), so the way between two of
            them should be spherical (:func:`interpolate`) and scaling them
            toward 0 trades variety for typical images (down to the image
            of the zero latent, which need not look like any of them).
        device: where it computes; latents and images it returns live there.
    """

    latent_shape: tuple[int, ...]
    image_size: tuple[int, int]
    gaussian: bool
    device: "torch.device"

    def sample_latents(self, n: int, seed: int) -> "torch.Tensor":
        """``(n, *latent_shape)`` latents from the model's prior. The same seed
        gives the same latents on the same device (they are drawn on the CPU
        with a seeded ``torch.Generator`` and then moved)."""
        ...

    def decode(self, z: "torch.Tensor") -> "torch.Tensor":
        """Latents ``(B, *latent_shape)`` -> images ``(B, 3, H, W)`` float in [0, 1]."""
        ...

    def encode(self, images: "torch.Tensor") -> "torch.Tensor":
        """Images ``(B, 3, H, W)`` in [0, 1] -> latents ``(B, *latent_shape)``
        whose decoding is close to them. A VAE encodes directly; a GAN inverts
        its generator by optimisation and may say how well it did in an
        attribute (``last_inversion_error``)."""
        ...


@dataclass(frozen=True)
class LatentModelSpec:
    """A latent model a plugin offers.

    Attributes:
        name: unique name (``faces64-gan``), used by ``--model``.
        description: one line for listings.
        load: ``load(device) -> LatentModel``; called only when the model is
            used, so registering stays cheap. It raises
            :class:`~imgedit.errors.WeightsError` when its weights are
            missing or do not verify.
        plugin: filled in by the host: who registered it.
    """

    name: str
    description: str
    load: Callable[[Any], LatentModel]
    plugin: str = ""


def latent_model_names() -> list[str]:
    """Names of every registered latent model, sorted."""
    from imgedit.registry import get_registry

    return sorted(get_registry().latent_models)


def load_latent_model(name: str, device: Any = "auto") -> LatentModel:
    """Build the registered latent model ``name`` on ``device``.

    Args:
        name: a registered latent model (:func:`latent_model_names`).
        device: as ``imgedit.run`` takes it (see
            :func:`imgedit.devices.resolve_device`): ``"auto"`` (CUDA,
            then MPS, then the CPU), ``"cpu"``, ``"cuda"``, ``"cuda:N"``,
            ``"mps"`` or a ``torch.device``; None reads ``IMGEDIT_DEVICE``,
            then is ``"auto"``.

    Raises:
        UsageError: no latent model has that name, or the registered one
            does not follow :class:`LatentModel`; the message lists the
            known names.
        DeviceError: ``device`` is not a device, or not on this machine.
        WeightsError: its weights are missing or do not verify.
    """
    from imgedit.registry import get_registry

    spec = get_registry().latent_models.get(name)
    if spec is None:
        from imgedit.errors import did_you_mean

        raise UsageError(f"unknown latent model '{name}' (known: {_known()}){did_you_mean(name, latent_model_names())}")
    model = spec.load(_resolved(device))
    if not isinstance(model, LatentModel):
        missing = [m for m in ("latent_shape", "image_size", "gaussian", "device", "sample_latents", "decode", "encode")
                   if not hasattr(model, m)]
        raise UsageError(f"latent model '{name}' from {spec.plugin or 'an unknown plugin'} does not implement the "
                         f"latent-model protocol (missing: {', '.join(missing)}); known: {_known()}")
    return model


def _resolved(device: Any) -> "torch.device":
    """``device`` resolved as ``imgedit.run`` resolves it: a model's load
    then gets a device that is there, not "auto", and a missing GPU is a
    DeviceError, not torch's RuntimeError from inside the load."""
    from imgedit.devices import resolve_device

    return resolve_device(device)


def _known() -> str:
    return ", ".join(latent_model_names()) or "none"


# torch's CPU generator (mt19937) keeps only the low 32 bits of a seed: -1 and
# 2**32 - 1 draw alike, 2**32 draws as 0, and past 2**64 manual_seed overflows.
MAX_SEED = 2**32 - 1


def check_seed(seed: int, what: str = "seed") -> int:
    """``seed`` if it is a seed every latent model draws distinctly from.

    Raises:
        UsageError: ``seed`` outside [0, 2**32 - 1] (another seed would draw the same latents).
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise UsageError(f"{what} must be a whole number from 0 to {MAX_SEED} (2**32 - 1), got {seed}")
    return seed


def check_truncation(truncation: float) -> float:
    """``truncation`` if it is in [0, 1] (NaN is not: it passes every comparison but decodes to black).

    Raises:
        UsageError: anything else.
    """
    if not (isinstance(truncation, (int, float)) and 0.0 <= truncation <= 1.0):
        raise UsageError(f"truncation must be in [0, 1], got {truncation}")
    return float(truncation)


def gaussian_latents(n: int, dim: int, seed: int, device: Any = "cpu") -> "torch.Tensor":
    """``(n, dim)`` N(0, I) latents drawn on the CPU from a generator seeded
    with ``seed``, then moved to ``device``: latent ``i`` of a seed is the
    same whatever ``n`` is (one draw per row), on every device.

    Raises:
        UsageError: ``seed`` outside [0, 2**32 - 1] (see :func:`check_seed`).
    """
    import torch

    g = torch.Generator().manual_seed(check_seed(seed))
    rows = [torch.randn(dim, generator=g) for _ in range(n)]
    return (torch.stack(rows) if rows else torch.empty(0, dim)).to(device)


def interpolate(z0: "torch.Tensor", z1: "torch.Tensor", t: float, spherical: bool = True) -> "torch.Tensor":
    """The point ``t`` (0 -> ``z0``, 1 -> ``z1``) between two batches of latents.

    Spherical (slerp, per latent) for Gaussian latents, whose mass lies near a
    sphere that a straight line would cut through; linear otherwise.
    """
    import torch

    if not spherical:
        return torch.lerp(z0, z1, t)
    a, b = z0.flatten(1), z1.flatten(1)
    cos = torch.nn.functional.cosine_similarity(a, b, dim=1, eps=1e-12).clamp(-1.0, 1.0)
    omega = torch.acos(cos)[:, None]
    sin = torch.sin(omega)
    near = sin.abs() < 1e-6  # (almost) parallel: slerp degenerates to lerp
    safe = torch.where(near, torch.ones_like(sin), sin)
    out = torch.where(near, torch.lerp(a, b, t), (torch.sin((1 - t) * omega) * a + torch.sin(t * omega) * b) / safe)
    return out.view_as(z0)


def load_latent_model_argument(model: str, device: Any = "auto") -> LatentModel:
    """The latent model a ``--model`` argument names: a registered name, or
    a weights file of whatever plugin's kind its card names (as by name: see
    :func:`_catalog_of`), so ``sample`` and ``interpolate`` take the same files.

    ``device`` is taken as :func:`load_latent_model` takes it.

    Raises:
        UsageError: an unknown name; a file given that is missing, does not
            verify or fit, or is a model of another kind: another --model
            fixes each.
        DeviceError: ``device`` is not a device, or not on this machine.
        WeightsError: a registered model's weights are missing or do not
            verify (exit 1, as the edit verbs': the install is broken, not
            the command).
    """
    from imgedit.catalog import is_file_argument, spec_for_file
    from imgedit.errors import WeightsError

    if not is_file_argument(model):
        return load_latent_model(model, device)
    try:
        spec = spec_for_file(model)
        return _catalog_of(spec).load(spec, _resolved(device))
    except WeightsError as exc:
        raise UsageError(str(exc)) from None


def _catalog_of(spec: Any) -> Any:
    """The latent catalog whose architecture ``spec``'s card names: the one
    that registers such weights by name when they are in the user's folder.

    Raises:
        UsageError: no file, no card, or a card no loaded plugin's catalog claims.
    """
    if not spec.weights.is_file():
        raise UsageError(f"--model {spec.weights}: no such file")
    card = spec.card()
    if not card:
        raise UsageError(f"--model {spec.weights}: no model card {spec.card_path.name} beside it (it says what the weights are)")
    catalogs = _latent_catalogs()
    found = next((c for c in catalogs if c.architecture == card.get("architecture")), None)
    if found is None:
        about = f" ({card['description']})" if card.get("description") else ""
        known = " or ".join(c.architecture for c in catalogs) or "none"
        raise UsageError(f"--model {spec.weights} is not a latent model: its card says "
                         f"{card.get('architecture') or 'no architecture'}{about}; latent models are {known}")
    return found


def _latent_catalogs() -> list[Any]:
    """The :class:`~imgedit.catalog.LatentCatalog` of each plugin that
    registered latent models, kept as ``<plugin module>.catalog.CATALOG``
    (imgedit_gan and imgedit_interp do); a plugin that IMGEDIT_LOAD_PLUGINS
    leaves out registers none, so its files are refused as its names are."""
    import importlib

    from imgedit.catalog import LatentCatalog
    from imgedit.plugins import pm
    from imgedit.registry import get_registry

    catalogs = []
    for plugin in dict.fromkeys(spec.plugin for spec in get_registry().latent_models.values()):
        module = getattr(pm.get_plugin(plugin), "__name__", plugin)
        try:
            catalog = importlib.import_module(f"{module}.catalog").CATALOG
        except (ImportError, AttributeError):  # its latent models are not weights files a catalog knows
            continue
        if isinstance(catalog, LatentCatalog):
            catalogs.append(catalog)
    return catalogs
