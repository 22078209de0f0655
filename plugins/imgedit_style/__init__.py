"""imgedit's style-transfer plugin: ``imgedit style`` (trained fast style
networks, or any painting by per-image optimisation; also the ``style``
pipeline stage), ``imgedit train style`` and ``imgedit eval style``. The
loss network needs no pretraining: random weights from a seed.

Cheap to import: torch and the networks load only when a command runs or
the operation is created.
"""

from imgedit import hookimpl


@hookimpl
def register_operations(register):
    from imgedit_style.operations import OPERATIONS

    for operation in OPERATIONS:
        register(operation)


@hookimpl
def register_models(register):
    from imgedit_style.operations import models

    for spec in models():
        register(spec)


@hookimpl
def register_commands(cli):
    from imgedit_style.commands import register

    register(cli)
