"""CLI verbs of the style plugin: ``imgedit style`` (the generic operation
verb; the operation itself checks that the style or painting exists before
any image is read), ``imgedit train style`` and ``imgedit eval style``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import click

from imgedit.errors import UsageError
from imgedit.shell import quote_arg
from imgedit.verbs import (COUNT, MAX_COUNT, TRAINING_PHOTO_SIDE, CheckedPath, FiniteFloat, apply_options, check_sheet, command_line, device_option,
                            echo_report, seed_option, sheet_option, side, threads_option, training_options)

from imgedit_style.operations import MAX_STYLE_SIZE

STYLE_HELP = """Apply a painting's style to images: a trained style network
(--style NAME, fast) or any painting by per-image optimisation
(--style-image FILE, slower; --steps).

\b
Examples:
  imgedit style photo.jpg --style mosaic
  imgedit style photos/ -o out/ --style candy --strength 0.7 --preserve-color
  imgedit style photo.jpg --style-image painting.jpg --steps 300
  imgedit run -p "denoise | style name=mosaic" photos/ -o out/
"""


@click.command("style")
@apply_options(training_options("Training photos: file, folder or glob (repeatable).", 2000, Path("runs") / "style", 4,
                                2e-3))
@click.option("--style-image", type=CheckedPath(),
              help="The painting (a resumed run goes on with its checkpoint's: one given must be the same).")
@click.option("--name", help="Name for --style, in your weights folder (default: the --export file's name, else the painting's "
                                 "file name).")
@click.option("--patch", type=click.IntRange(16, TRAINING_PHOTO_SIDE), default=256, show_default=True,
              help=f"Training crop size in px (multiple of 8; photos are read at most {TRAINING_PHOTO_SIDE} px on a side).")
@click.option("--style-size", type=click.IntRange(32, MAX_STYLE_SIZE), default=512, show_default=True,
              help="Long side in px the painting is seen at: larger = larger strokes.")
@click.option("--content-weight", type=FiniteFloat(min=0), default=None,
              help="Weight of the content loss against the style loss (default 0.5): larger keeps more of the photo.")
@click.option("--skips/--no-skips", default=True, show_default=True,
              help="U-Net skips in the network: they keep edges sharp; without them the network repaints more "
                   "freely (a closer style match, softer detail).")
@click.option("--tv-weight", type=FiniteFloat(min=0), default=0.0, show_default=True, help="Total-variation smoothing.")
@click.option("--loss-net", type=click.Choice(["random", "vgg16", "vgg19"]), default="random", show_default=True,
              help="The loss network: random weights (no download), or VGG from the local torchvision cache.")
@seed_option(None, flag="--loss-seed", help="Seed of the random loss network (default: the recipe's).")
@click.option("--preview-every", type=COUNT, default=100, show_default=True,
              help="Steps between preview images in OUT/samples/ (and checkpoints).")
@threads_option()
def train_style_command(sources, steps, resume, out_dir, overwrite, export_path, device, batch, lr, seed, quiet, style_image,
                        name, patch, style_size, content_weight, skips, tv_weight, loss_net, loss_seed, preview_every,
                        threads):
    """Train a fast style network for one painting on your photos.

    Without --export the style goes to your weights folder and is usable at
    once as 'imgedit style photo.jpg --style NAME'; a file exported elsewhere
    is used by its path: '--style FILE.safetensors'.
    Every --preview-every steps a preview (photos above their stylisations)
    goes to OUT/samples/ and a checkpoint to OUT/checkpoint.safetensors,
    which --resume continues exactly: it keeps the painting, so a resumed
    run needs no --style-image (one given must have the same content).

    \b
    Example:
      imgedit train style --style-image mosaic.jpg --data photos/ --name my-mosaic
    """
    import torch

    from imgedit import registry
    from imgedit.devices import resolve_device
    from imgedit.training import ProgressBar, check_fresh_run, run_folder, trained_line
    from imgedit_style.operations import check_style_image
    from imgedit_style.train import export_style, train_style

    if threads:
        torch.set_num_threads(threads)
    if style_image is None and resume is None:
        raise UsageError("--style-image: give the painting to train on (a resumed run goes on with its checkpoint's)")
    if style_image is not None:
        check_style_image(style_image)
    if loss_net != "random":
        from imgedit_style.lossnet import require_vgg_file

        require_vgg_file(loss_net)  # before the photos load
    name, target = _style_target(name, export_path, style_image, resume)
    check_fresh_run(out_dir, resume, overwrite, export=target, kind="style")  # before the photos load
    cfg = _train_config(style_image, steps, batch, patch, lr, seed, style_size, content_weight, skips, tv_weight,
                        loss_net, loss_seed, preview_every)
    started = time.time()
    with ProgressBar(cfg.steps, {"style": ".3f", "content": ".3f"}, quiet) as bar:
        trainer = train_style(cfg, sources, out_dir, resolve_device(device), resume=resume, on_progress=bar,
                              command=command_line(click.get_current_context()), overwrite=overwrite,
                              export=(name, target))
    painting = Path(trainer.cfg.style_image).name
    export_style(trainer, target, name=name, description=f"Fast style network: {name} (from {painting})",
                 sources=list(sources), session_seconds=time.time() - started)
    registry.reset()  # the new style is usable by name at once
    previews = run_folder(out_dir, resume) / "samples"
    click.echo(trained_line(trainer, target) + "\n" +
               f"Previews: {previews}\nUse it: imgedit style photo.jpg --style {_style_argument(name, target)}")


def _style_argument(name: str, target: Path) -> str:
    """What --style takes for the new weights, quoted for a shell: the name
    where the catalog finds them by it (the weights folders), else the file's path."""
    from imgedit_style.catalog import styles

    known = styles().get(name)
    chosen = name if known is not None and known.weights.resolve() == Path(target).resolve() else str(target)
    return quote_arg(chosen)  # pasted into a shell: "my style" must stay one argument


def _export_target(name, export_path, style_image: Path):
    """The style's name and weights file.

    Raises:
        UsageError: a name no style can have (:func:`imgedit.catalog.check_model_name`; a shipped
            style's, outside the shipped folder), or a name that differs from the --export file's.
    """
    from imgedit.catalog import check_model_name, shipped_model_names
    from imgedit_style.catalog import default_export_path

    if name is not None:
        check_model_name(name, shipped_model_names() if export_path is None else (), "style")
    if export_path is not None and name and name != export_path.stem:
        raise UsageError(f"--name {name} differs from the --export file's name {export_path.stem}: "
                         "a style is named after its file")
    if name or export_path is not None:
        return name or export_path.stem, export_path or default_export_path(name)
    name = style_image.stem
    check_model_name(name, shipped_model_names(), "style",
                     said=f"the style's name {name} (after its painting {style_image.name}; give --name)")
    return name, default_export_path(name)


def _style_target(name, export_path, style_image: Optional[Path], resume):
    """:func:`_export_target`, except that a resumed run told neither
    ``--name`` nor ``--export`` keeps its own: the name and file its
    checkpoint records, or (an older checkpoint) its painting's name."""
    from imgedit.checkpoint import checkpoint_info
    from imgedit.training import run_export

    if resume is None or name is not None or export_path:
        return _export_target(name, export_path, style_image)
    own = run_export(resume, "style")
    if own is not None:
        return own
    return _export_target(None, None, Path(checkpoint_info(resume, "style")["config"]["style_image"]))


def _train_config(style_image: Optional[Path], steps, batch, patch, lr, seed, style_size, content_weight, skips,
                  tv_weight, loss_net, loss_seed, preview_every):
    from imgedit_style.losses import StyleLossConfig
    from imgedit_style.lossnet import LossNetConfig
    from imgedit_style.model import StyleNetConfig
    from imgedit_style.train import StyleTrainConfig

    loss = StyleLossConfig(tv_weight=tv_weight, **({} if content_weight is None else {"content_weight": content_weight}))
    net = LossNetConfig(kind=loss_net, **({} if loss_seed is None else {"seed": loss_seed}))
    painting = str(style_image.resolve()) if style_image else ""  # none on a resume: the checkpoint's
    return StyleTrainConfig(style_image=painting, steps=steps, batch=batch, patch=patch, lr=lr, seed=seed,
                            style_size=style_size, model=StyleNetConfig(skips=skips), val_every=preview_every,
                            checkpoint_every=preview_every, loss=loss, loss_net=net)


@click.command("style")
@click.option("--style", "names", multiple=True, help="Styles to measure (repeatable; default: every style with weights).")
@click.option("--data", "sources", multiple=True, required=True, help="Photos: folder, file or glob (repeatable).")
@click.option("--limit", type=COUNT, default=4, show_default=True, help="Use at most N photos.")
@click.option("--size", type=side(32), default=256, show_default=True,
              help="Long side in px the photos are measured at.")
@click.option("--steps", type=click.IntRange(0, MAX_COUNT), default=300, show_default=True,
              help="Steps of the per-image optimisation baseline (0: skip it and the ratio).")
@seed_option(None, help="Seed of the measuring network (default: imgedit_style.evaluate.EVAL_SEED).")
@sheet_option("Write a contact sheet: the photos x every style.")
@device_option()
@threads_option()
@click.option("--record", is_flag=True, help="Also write each style's results into its model card's metrics block "
                                             "(refused where that holds figures over more photos or --steps).")
@click.option("--overwrite", is_flag=True, help="Replace an existing --sheet; with --record, the recorded figures even so.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def eval_style_command(names, sources, limit, size, steps, seed, sheet, device, threads, record, overwrite, as_json, quiet):
    """Style match and content kept for style networks (definitions: imgedit_style/evaluate.py).

    Style distance is measured by a random network of another seed than
    training's, for the fast network and for per-image optimisation on the
    same photo (their ratio should be at most 1.5); content kept is the SSIM
    of the blurred luminance.

    \b
    Example:
      imgedit eval style --data kodak24/ --limit 4 --sheet styles.png
    """
    from imgedit.verbs import check_overwrite
    from imgedit_style.report import evaluate_styles, format_report

    check_overwrite(overwrite, record=record, sheet=sheet)
    check_sheet(sheet, overwrite)  # before the minutes of measuring
    if threads:
        import torch

        torch.set_num_threads(threads)
    report, notes = evaluate_styles(list(names), list(sources), limit=limit, size=size, steps=steps, seed=seed,
                                    sheet=sheet, device=device, record=record, quiet=quiet or as_json, overwrite=overwrite)
    echo_report(report, notes, as_json, lambda: format_report(report))


def register(cli: click.Group) -> None:
    from imgedit.verbs import add_operation_verb, command_group

    add_operation_verb(cli, "style", STYLE_HELP, short_help="Apply a painting's style to images.")
    command_group(cli, "train", "Train a plugin's model on your own images.").add_command(train_style_command)
    command_group(cli, "eval", "Measure a plugin's model on a benchmark set.").add_command(eval_style_command)
