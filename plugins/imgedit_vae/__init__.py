"""imgedit's conditional-VAE plugin: learned denoising (``denoise.vae``, a
colour model and its grayscale partner) and inpainting (``inpaint.vae``),
with their training and evaluation verbs. Design and history: DESIGN.md.

Cheap to import: torch and the model load only when the registry is built
or a command runs.
"""

from imgedit import hookimpl


@hookimpl
def register_operations(register):
    from imgedit_vae.operations import OPERATIONS

    for operation in OPERATIONS:
        register(operation)


@hookimpl
def register_models(register):
    from imgedit_vae.operations import MODELS

    for spec in MODELS:
        register(spec)


@hookimpl
def register_commands(cli):
    from imgedit_vae.commands import register

    register(cli)
