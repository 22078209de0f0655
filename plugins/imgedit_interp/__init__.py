"""imgedit's latent-interpolation plugin: ``imgedit interpolate`` (morphs
between images and walks between samples of any latent model), ``imgedit
train interp-vae``, ``imgedit eval interp``, and the ``faces64-vae`` latent
model.

Cheap to import: torch and the networks load only when a command runs or a
model is loaded.
"""

from imgedit import hookimpl


@hookimpl
def register_models(register):
    from imgedit_interp.catalog import CATALOG

    register(CATALOG.shipped_spec())


@hookimpl
def register_latent_models(register):
    from imgedit_interp.catalog import CATALOG

    for spec in CATALOG.latent_specs():
        register(spec)


@hookimpl
def register_commands(cli):
    from imgedit_interp.commands import register

    register(cli)
