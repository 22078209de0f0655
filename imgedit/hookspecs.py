"""The hook specifications of imgedit: the whole contract between the host and
its plugins, built-in or third-party.

Every hook is ``register_*(register)`` or ``register_commands(cli)``: the host
passes a callback (or the click group) and the plugin calls it once per thing it
provides. Results are not returned, so pluggy's result list is unused. Specs may
gain arguments over time (an implementation may accept fewer than the spec);
they are never renamed. An implementation named like no hook here
(``register_operation``) would never be called: ``imgedit plugins`` reports it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import pluggy

if TYPE_CHECKING:  # pragma: no cover - typing only, keeps start-up cheap
    import click

    from imgedit.latents import LatentModelSpec
    from imgedit.models import ModelSpec
    from imgedit.operations import Operation

hookspec = pluggy.HookspecMarker("imgedit")
hookimpl = pluggy.HookimplMarker("imgedit")


@hookspec
def register_commands(cli: "click.Group") -> None:
    """Add the plugin's CLI verbs to the ``imgedit`` click group.

    Args:
        cli: the top-level group. Call ``cli.add_command(...)`` or decorate with
            ``@cli.command()``. Image verbs should use
            :func:`imgedit.verbs.add_operation_verb`, which gives them the common
            options (inputs, ``-o``, ``--device``, ``--tile``, ...) for free.
            A verb another plugin (or imgedit) already has is left out, and
            ``imgedit plugins`` flags it; the plugin's other verbs still register.
    """


@hookspec
def register_operations(register: "Callable[[Operation], None]") -> None:
    """Register pipeline operations (the stages of ``imgedit run``).

    Args:
        register: call once per :class:`imgedit.operations.Operation`. An
            operation is keyed by ``(name, method)``; where two plugins register the
            same key, the first loaded (built-ins first) keeps it and the other
            is flagged in ``imgedit plugins``. The highest ``priority`` is the
            default method; a parameter several methods take is declared, for
            the verb's option, by the plugin that declared it first. Registration
            must be cheap: import torch and load weights inside
            ``Operation.create``, not here.
    """


@hookspec
def register_models(register: "Callable[[ModelSpec], None]") -> None:
    """Register model weights the plugin ships or knows about.

    Args:
        register: call once per :class:`imgedit.models.ModelSpec`. These are
            listed (and their sha256 checked) by ``imgedit models``.
    """


@hookspec
def register_latent_models(register: "Callable[[LatentModelSpec], None]") -> None:
    """Register generative models that map latents to images and back.

    Args:
        register: call once per :class:`imgedit.latents.LatentModelSpec`. Its
            ``load(device)`` returns an object following
            :class:`imgedit.latents.LatentModel` (``sample_latents``,
            ``decode``, ``encode``, ...) and is called only when a verb needs
            the model, so registering must stay cheap: no torch, no weights.
            Names are unique; a plugin registering a name already taken is an
            error shown by ``imgedit plugins``, and the first one keeps it.
            :func:`imgedit.latents.load_latent_model` builds one by name.
    """
