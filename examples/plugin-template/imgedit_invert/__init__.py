"""A minimal third-party imgedit plugin: one operation and one verb.

Install it into imgedit's environment with
``pip install -e ./examples/plugin-template`` and run
``imgedit invert photo.jpg`` or use ``invert amount=0.5`` in a pipeline.
"""

from imgedit import hookimpl
from imgedit.operations import Capabilities, Operation, Param


def create_invert(context, amount=1.0):
    """Build the applier once per run (a model would load here)."""

    def apply(image, mask=None):
        # (B, 3, H, W) in [0, 1] -> blend towards the negative
        return image + amount * ((1.0 - image) - image)

    return apply


INVERT = Operation(
    name="invert",
    method="basic",
    create=create_invert,
    params=(Param("amount", float, 1.0, help="0 keeps the image, 1 is the full negative", minimum=0, maximum=1),),
    capabilities=Capabilities(tileable=True, tile_overlap=0, precisions=("fp32", "fp16", "bf16"), memory_mb_per_megapixel=30),
    description="Invert colours (photographic negative).",
)


@hookimpl
def register_operations(register):
    register(INVERT)


@hookimpl
def register_commands(cli):
    from imgedit.verbs import add_operation_verb

    add_operation_verb(cli, "invert", help="Invert the colours of images.")
