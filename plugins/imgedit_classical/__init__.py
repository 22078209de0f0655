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


# The verbs' help; imgedit_vae gives denoise's too: the first plugin to add a verb names it.
INPAINT_SHORT_HELP = "Fill holes in images (mask, transparency, colour or box)."
INPAINT_HELP = """Fill holes in images; --method picks the fill. The hole comes from
--mask (a file, or a folder of masks by stem), the image's transparency, a
sidecar photo.mask.png, --mask-color or --mask-box.

\b
Examples:
  imgedit inpaint photo.png                      # hole from transparency or photo.mask.png
  imgedit inpaint photos/ -o filled/ --mask masks/
  imgedit inpaint photo.jpg --mask-box 120,80,64,48 --dilate 4
"""
DENOISE_SHORT_HELP = "Remove noise from images (--sigma N, 0-255, or auto)."
DENOISE_HELP = """Remove noise from images: --sigma N on the 0-255 scale, or auto
(the noise level read from each image); --method picks the denoiser.

\b
Examples:
  imgedit denoise photo.jpg                      # noise level read from the image
  imgedit denoise scans/ -r -o clean/ --sigma 25
  imgedit denoise photo.jpg --strength 0.7 -o softer.jpg
"""


@hookimpl
def register_commands(cli):
    from imgedit.verbs import add_operation_verb

    add_operation_verb(cli, "inpaint", help=INPAINT_HELP, short_help=INPAINT_SHORT_HELP)
    add_operation_verb(cli, "denoise", help=DENOISE_HELP, short_help=DENOISE_SHORT_HELP)
