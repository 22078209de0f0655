"""CLI verbs of the GAN plugin: ``imgedit sample`` (any latent model),
``imgedit train gan`` and ``imgedit eval gan``."""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path
from typing import Any, Iterator, Optional

import click

from imgedit.catalog import is_file_argument, weights_spec
from imgedit.errors import UsageError
from imgedit.latents import MAX_SEED, load_latent_model_argument
from imgedit.shell import quote_arg
from imgedit.verbs import (COUNT, FiniteFloat, CheckedPath, apply_options, check_overwrite, check_record, command_line,
                            device_option, echo_report, latent_model_option, printable, sigterm_as_interrupt, threads_option,
                            training_options, whole_image_options)
from imgedit_gan.catalog import MODEL_NAME

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp")
MAX_GRID = 1024  # images on one contact sheet
MAX_SAMPLES = 1_000_000  # images per run: their paths and latents are held in memory, and one folder holds them
DEFAULT_AUGMENT = "translation,cutout"  # imgedit_gan.train.GANTrainConfig.augment (not imported: --help loads no torch)
def _sample_targets(output: Path, model: str, seed: int, count: int, as_grid: bool) -> list[Path]:
    """The files ``sample`` writes, checked before any work.

    Raises:
        UsageError: too many images, or an ``-o`` that cannot hold them.
    """
    stem = Path(model).stem if is_file_argument(model) else model
    if as_grid:
        if count > MAX_GRID:
            raise UsageError(f"--grid holds at most {MAX_GRID} images, got -n {count}")
        return [_sheet_path(output, f"{stem}-seed{seed}-n{count}.png")]
    if count > MAX_SAMPLES:  # before a list of count paths is built
        raise UsageError(f"-n {count}: at most {MAX_SAMPLES} images per run (their names and latents are held in "
                         "memory); image i of a seed does not depend on -n, so run again with another --seed for more")
    if output.suffix.lower() in IMAGE_SUFFIXES:
        raise UsageError(f"-o {output}: without --grid the output is a folder (one file per image)")
    if output.exists() and not output.is_dir():
        raise UsageError(f"-o {output} is a file: without --grid the output is a folder (one file per image)")
    digits = max(4, len(str(count - 1)))
    return [output / f"{stem}-seed{seed}-{i:0{digits}d}.png" for i in range(count)]


def _sheet_path(output: Path, default_name: str) -> Path:
    """The contact sheet's file: ``output`` itself where it names a still image, else a file in that folder."""
    if output.is_dir():
        return output / default_name
    if output.suffix.lower() in IMAGE_SUFFIXES:
        return output
    if output.suffix:  # a name like sheet.gif is meant as a file: a folder of that name would surprise
        raise UsageError(f"-o {output}: a contact sheet is written as {', '.join(IMAGE_SUFFIXES)}; "
                         "give one of those, or a folder")
    return output / default_name


def _existing(targets: list[Path], as_grid: bool, model: str, seed: int) -> list[Path]:
    """What this run would replace: the sheet, or for images every one of
    this model and seed that an earlier run wrote in the folder, at any -n
    (named as :func:`_sample_targets` names them; the user's other files
    are not ours), from one listing (not one stat per file: -n may be large)."""
    if as_grid:
        return [t for t in targets if t.exists()]
    folder = targets[0].parent
    if not folder.is_dir():
        return []
    stem = Path(model).stem if is_file_argument(model) else model
    ours = re.compile(rf"{re.escape(stem)}-seed{seed}-\d{{4,}}\.png")
    return sorted(path for path in folder.iterdir() if ours.fullmatch(path.name))


def _latents(model: Any, count: int, seed: int, truncation: float):
    from imgedit.latents import check_truncation

    check_truncation(truncation)  # NaN would pass the multiplication and decode to black
    if truncation != 1.0 and not model.gaussian:
        raise UsageError("--truncation needs a model with Gaussian latents")
    return model.sample_latents(count, seed) * truncation


def _decoded(model: Any, z: Any, count: int) -> Iterator[tuple[int, Any]]:
    """``(start, images)`` per chunk of :data:`~imgedit_gan.sampler.DECODE_CHUNK`
    latents, the padding beyond ``count`` dropped: ``z`` holds whole chunks
    of the seed's latents, so image i is decoded in the same batch whatever
    -n is (a kernel's rounding depends on the batch), to the bit."""
    from imgedit_gan.sampler import DECODE_CHUNK

    for start in range(0, count, DECODE_CHUNK):
        yield start, model.decode(z[start : start + DECODE_CHUNK]).cpu()[: count - start]


def _write_samples(model: Any, z: Any, targets: list[Path], overwrite: bool, quiet: bool) -> None:
    """One PNG per target, as its chunk is decoded."""
    from imgedit.atomic import remove_stale_temps_of
    from imgedit.verbs import StageProgress
    from imgedit_gan.sampler import save_image

    remove_stale_temps_of(targets[0].parent, {t.name for t in targets})  # those a killed run left
    with StageProgress(len(targets), "sampling", "image", quiet) as advance:
        for start, images in _decoded(model, z, len(targets)):
            for k, image in enumerate(images):
                # atomic but not fsynced one by one (2x faster): a sample is redrawn from its seed
                save_image(image, targets[start + k], overwrite=overwrite, durable=False)
                advance(1)


def _check_memory(model: Any, count: int, as_grid: bool) -> None:
    """Refuse -n whose latents would not fit in memory: they are drawn at once
    (and decoded a batch at a time, but all at once for a sheet)."""
    import math

    from imgedit.devices import check_fits_in_memory

    per_image = 4 * math.prod(model.latent_shape) + (4 * 3 * math.prod(model.image_size) if as_grid else 0)
    check_fits_in_memory(count * per_image, f"-n {count}", "ask for fewer images per run")


@click.command("sample", short_help="Generate new images from a latent model (default: face GAN).")
@latent_model_option(MODEL_NAME)
@click.option("-n", "--n", "count", type=click.IntRange(min=1), default=16, show_default=True,
              help=f"Number of images (at most {MAX_SAMPLES}).")
@click.option("--seed", type=click.IntRange(0, MAX_SEED), default=0, show_default=True,
              help="Image i of a seed is the same whatever -n is (0 to 2**32 - 1).")
@click.option("-o", "--output", type=CheckedPath(), required=True,
              help="Folder for the images; with --grid, the sheet's file (.png, .jpg, ...) or a folder for it.")
@click.option("--grid", "as_grid", is_flag=True, help="Write one contact sheet instead of one PNG per image.")
@click.option("--truncation", type=FiniteFloat(0, 1), default=1.0, show_default=True,
              help="Scale the latents toward 0: 1 = full variety, 0.5-0.8 = cleaner, more typical faces; "
                   "below about 0.4 the faces fade into one flat tile (0: the same for every seed).")
@device_option()
@threads_option("CPU threads for decoding (default: torch's choice, one per core).")
@click.option("--overwrite", is_flag=True, help="Replace existing files.")
@click.option("-q", "--quiet", is_flag=True, help="Print only errors.")
def sample_command(model, count, seed, output, as_grid, truncation, device, overwrite, quiet, threads=None):
    """Generate new images from a latent model (default: the shipped 64x64 face GAN).

    \b
    Examples:
      imgedit sample -n 16 --seed 0 -o faces/
      imgedit sample -n 64 --grid -o sheet.png --truncation 0.7
    """
    import torch

    from imgedit.atomic import check_writable_folder
    from imgedit.devices import resolve_device, set_threads
    from imgedit_gan.sampler import save_grid, whole_chunks

    set_threads(threads)

    if quiet:
        logging.getLogger("imgedit").setLevel(logging.ERROR)  # "print only errors": no warnings either
    # seed and truncation: the options' ranges check them, and gaussian_latents / _latents do for Python callers
    targets = _sample_targets(output, model, seed, count, as_grid)
    check_writable_folder(targets[0].parent, f"-o {output}")  # before the model loads
    existing = _existing(targets, as_grid, model, seed)
    if existing and not overwrite:  # any earlier image of the seed, not only those of -n: the folder would mix two runs
        raise UsageError(f"{existing[0]} exists" + (f" ({len(existing)} images of seed {seed} do)" if len(existing) > 1 else "")
                         + "; pass --overwrite to replace them")
    with sigterm_as_interrupt("each image written so far is complete"):
        loaded = load_latent_model_argument(model, resolve_device(device))
        _check_memory(loaded, whole_chunks(count), as_grid)
        z = _latents(loaded, whole_chunks(count), seed, truncation)  # whole chunks: see _decoded
        if as_grid:
            save_grid(torch.cat([images for _, images in _decoded(loaded, z, count)]), targets[0], overwrite=overwrite)
        else:
            _write_samples(loaded, z, targets, overwrite, quiet)
            for stale in set(existing) - set(targets):  # an earlier run's images beyond -n: it would mix with this one
                stale.unlink(missing_ok=True)
    where = targets[0] if as_grid else output
    if not quiet:
        click.echo(printable(f"wrote {count} sample{'' if count == 1 else 's'} of {model} (seed {seed}, "
                             f"truncation {truncation:g}) to {where}"), err=True)


@click.command("gan")
@apply_options(training_options("Training images: file, folder or glob (repeatable).", 8000, Path("runs") / "gan", 32, 2e-4))
@apply_options(whole_image_options("imgedit eval gan", "my-gan"))
@click.option("--augment", default=DEFAULT_AUGMENT, show_default=True,
              help="DiffAugment policy: some of color, translation, cutout (comma-separated), or none. "
                   "color also randomises brightness, saturation and contrast, which helps with a few hundred images "
                   "but lets the generator narrow the colours of a few thousand.")
def train_gan_command(sources, steps, resume, out_dir, overwrite, export_path, device, batch, lr, seed, quiet, size, holdout,
                      name, licence, augment):
    """Train a GAN (hinge loss, DiffAugment, EMA generator) on images.

    Every 500 steps a grid of samples goes to OUT/samples/ and a checkpoint
    to OUT/checkpoint.safetensors, which --resume continues exactly.
    """
    from imgedit import registry
    from imgedit.devices import resolve_device
    from imgedit.training import ProgressBar, check_fresh_run, export_target, trained_line
    from imgedit_gan.catalog import CATALOG
    from imgedit_gan.model import GANConfig
    from imgedit_gan.train import GANTrainConfig, export_gan, train_gan

    name, target = export_target(CATALOG.export_target(name, export_path, "my-gan"), resume, "gan",
                                 told=bool(name or export_path))
    check_fresh_run(out_dir, resume, overwrite, export=target, kind="gan")
    cfg = GANTrainConfig(steps=steps, batch=batch, lr=lr, d_lr=lr, holdout=holdout, seed=seed, augment=augment,
                         model=GANConfig(image_size=size))
    dev = resolve_device(device)
    started = time.time()
    command = command_line(click.get_current_context())
    with ProgressBar(cfg.steps, {"d_loss": ".3f", "g_loss": ".3f"}, quiet) as bar:
        trainer = train_gan(cfg, sources, out_dir, dev, resume=resume, on_progress=bar, command=command, overwrite=overwrite,
                            export=(name, target), licence=licence)
    export_gan(trainer, target, name=name, description=f"{trainer.cfg.model.image_size}x{trainer.cfg.model.image_size} GAN trained "
               f"on {', '.join(map(str, sources))}", sources=list(sources), session_seconds=time.time() - started, licence=licence)
    registry.reset()  # the new model is usable by name at once
    registered = weights_spec(name)
    use = name if registered is not None and registered.weights.resolve() == target.resolve() else target
    click.echo(trained_line(trainer, target) + "\n" +
               f"Sample with: imgedit sample --model {quote_arg(str(use))} -n 16 -o samples/")


@click.command("gan", short_help="SWD, KID and diversity of a GAN's samples against real images.")
@latent_model_option(MODEL_NAME)
@click.option("--real", "real_sources", multiple=True, required=True,
              help="Real images the model was NOT trained on (a held-out split): folder, file or glob (repeatable).")
@click.option("--held-out", is_flag=True, help="Use only the images of --real that the model card lists as held out ('imgedit train gan --holdout N').")
@click.option("-n", "--n", "count", type=click.IntRange(2, COUNT.max), default=2000, show_default=True,
              help="Images per set. --real is split into two halves of n (reference and floor); with fewer real images n shrinks.")
@click.option("--seed", type=click.IntRange(0, MAX_SEED), default=0, show_default=True,
              help="Seed of the real images' split, the model's latents, the Gaussian baseline and the metrics' draws.")
@click.option("--truncation", type=FiniteFloat(0, 1), default=1.0, show_default=True,
              help="Scale the latents toward the mean, as 'imgedit sample --truncation' does: 1 = full variety.")
@device_option()
@threads_option()
@click.option("--record", is_flag=True, help="Also write the results into the model card's metrics block "
                                             "(refused where that holds held-out figures and these are not, or a larger n).")
@click.option("--overwrite", is_flag=True, help="With --record: replace the recorded figures even so.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def eval_gan_command(model, real_sources, held_out, count, seed, truncation, device, threads, record, overwrite, as_json):
    """SWD, KID and diversity of a GAN's samples against real images, beside
    the real-vs-real floor and a Gaussian baseline (definitions: imgedit_gan/metrics.py).

    --real must be images the model never saw: train with --holdout N and
    evaluate on the same folder with --held-out, or give a separate folder.
    The real images are shuffled (--seed) and split into a reference half and
    a floor half; each set below is compared with the reference: "real (floor)"
    is the other half (what a perfect model would score), "gaussian (baseline)"
    samples a Gaussian fitted to the floor half's pixels.
    """
    import torch

    from imgedit.devices import resolve_device
    from imgedit.imageset import overlap_warning
    from imgedit.models import record_metrics
    from imgedit_gan import metrics

    check_overwrite(overwrite, record=record)
    if threads:
        torch.set_num_threads(threads)
    spec = weights_spec(model)
    card = spec.card() if spec is not None else {}
    if record and not card:
        raise UsageError(f"--record: model '{model}' has no model card to record into")
    loaded = load_latent_model_argument(model, resolve_device(device))
    reference, floor = _real_halves(real_sources, loaded.image_size[0], count, seed, card if held_out else None)
    n = len(reference)
    if record:  # before the minutes of sampling and scoring
        check_record(spec, "eval_gan", {"held_out": held_out, "n": n}, ("n",), overwrite)
    started = time.perf_counter()
    fake = loaded.decode(_latents(loaded, n, seed, truncation)).cpu()
    speed = n / (time.perf_counter() - started)
    sets = {"real (floor)": floor, "model": fake, "gaussian (baseline)": metrics.pca_gaussian(floor, n, seed)}
    results = metrics.evaluate(reference, sets, seed, baseline="gaussian (baseline)")
    report = {"model": model, "real": list(real_sources), "held_out": held_out, "n": n, "seed": seed,
              "truncation": truncation, "device": str(loaded.device), "sampling_images_per_s": round(speed, 1),
              "protocol": "imgedit_gan.metrics (SWD: ProGAN, 7x7, 128/image/level, 4x512 directions; "
                          "KID: cubic kernel, 100 subsets of min(1000, n/2); features: FeatureNet seed "
                          f"{metrics.FEATURE_SEED})", "results": results}
    notes = overlap_warning(card, real_sources, held_out, spec.card_path if spec is not None else None)
    if record:
        record_metrics(spec, "eval_gan", report)
        notes.append(f"recorded in {spec.card_path}")
    echo_report(report, notes, as_json, lambda: metrics.format_table(
        results, f"{model} vs {', '.join(real_sources)}: n={n} per set, seed {seed}, "
                 f"truncation {truncation:g}, {speed:.0f} samples/s on {loaded.device}"))


def _real_halves(sources, size: int, count: int, seed: int, card: Optional[dict]):
    """(reference, floor): two disjoint random halves of the real images, ``(n, 3, S, S)`` in [0, 1]."""
    import torch

    from imgedit.imageset import held_out_of, load_squares

    real = load_squares(sources, size, what="real images")
    if card is not None:
        real = held_out_of(real, card)
    if len(real) < 4:
        raise UsageError(f"need at least 4 real images, found {len(real)} in {', '.join(map(str, sources))}")
    n = min(count, len(real) // 2)
    order = torch.randperm(len(real), generator=torch.Generator().manual_seed(seed))
    images = real.images.float() / 255.0
    return images[order[:n]], images[order[n : 2 * n]]


def register(cli: click.Group) -> None:
    from imgedit.verbs import command_group

    cli.add_command(sample_command)
    command_group(cli, "train", "Train a plugin's model on your own images.").add_command(train_gan_command)
    command_group(cli, "eval", "Measure a plugin's model on a benchmark set.").add_command(eval_gan_command)
