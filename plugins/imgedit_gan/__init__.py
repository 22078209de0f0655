"""imgedit's GAN plugin: ``imgedit sample`` (images from any latent model),
``imgedit train gan`` and ``imgedit eval gan``, and the ``faces64-gan``
latent model.

Cheap to import: torch and the networks load only when a command runs or a
model is loaded.
"""

from imgedit import hookimpl


@hookimpl
def register_models(register):
    from imgedit_gan.catalog import CATALOG

    register(CATALOG.shipped_spec())


@hookimpl
def register_latent_models(register):
    from imgedit_gan.catalog import CATALOG

    for spec in CATALOG.latent_specs():
        register(spec)


@hookimpl
def register_commands(cli):
    from imgedit_gan.commands import register

    register(cli)
