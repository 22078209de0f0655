"""Classical methods with no weights (OpenCV): inpainting by Telea or
Navier-Stokes and non-local-means denoising. They make imgedit useful from
day one and are the baselines learned methods must beat.

This module stays cheap to import (no torch) so ``imgedit --help`` is fast:
the operations are declared in ``ops`` only when the registry is built.
"""

from imgedit import hookimpl


@hookimpl
def register_operations(register):
    from imgedit_classical.ops import OPERATIONS

    for operation in OPERATIONS:
        register(operation)


@hookimpl
def register_commands(cli):
    from imgedit.verbs import add_operation_verb

    add_operation_verb(cli, "inpaint")  # the host's verbs: their help is imgedit.verbs.SHARED_VERB_HELP
    add_operation_verb(cli, "denoise")
