"""CLI verbs of the interpolation plugin: ``imgedit interpolate``,
``imgedit train interp-vae`` and ``imgedit eval interp``."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Optional

import click

from imgedit.catalog import weights_spec
from imgedit.errors import UsageError
from imgedit.latents import load_latent_model_argument
from imgedit.shell import quote_arg
from imgedit.verbs import (COUNT, FiniteFloat, CheckedPath, apply_options, check_overwrite, check_record, check_sheet,
                            command_line, device_option, echo_report, latent_model_option, printable, seed_option, sheet_option,
                            sigterm_as_interrupt, threads_option, training_options, typed_option, whole_image_options)

def _parse_seeds(text: str) -> list[int]:
    from imgedit.latents import check_seed

    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UsageError(f"--seeds takes whole numbers separated by commas (e.g. 1,5,9), got '{text}'") from None
    return [check_seed(seed, "--seeds: each seed") for seed in seeds]


def _keyframe_paths(images: tuple[Path, ...]) -> list[Path]:
    """The key images in order: a file as given (a repeat is a keyframe
    too: ``a b a`` goes there and back), a folder's images and a glob's
    matches in sorted order, as every image verb scans them (a folder's
    sub-folders are not: there is no -r).

    Raises:
        UsageError: a file or folder that does not exist, a folder with no
            images, a glob that matches none.
    """
    from imgedit.inputs import expand_inputs

    paths: list[Path] = []
    for item in images:
        if item.is_dir() or not item.exists():  # a missing file: the usage error every image verb gives
            paths.extend(found.path for found in expand_inputs([str(item)]))
        else:
            paths.append(item)
    return paths


def _shared_mode(paths: list[Path]) -> Optional[int]:
    """The key photos' permission bits ANDed: a morph of private photos is
    private too (None for a walk between seeds, which has no photos)."""
    import functools
    import os

    modes = [os.stat(path).st_mode for path in paths]
    return functools.reduce(lambda a, b: a & b, modes) if modes else None


def _read_keyframes(paths: list[Path], size: int):
    """The images as ``(K, 3, size, size)`` centred squares in [0, 1]."""
    import torch

    from imgedit.imageio import read_image
    from imgedit.tensor import center_square, to_tensor

    return torch.cat([center_square(to_tensor(read_image(p).rgb), size) for p in paths])


MAX_Z_DIM = 4096  # numbers in one latent: its prior's covariance is z_dim x z_dim, and a 64-px face has 12288 values
MAX_EVAL_FRAMES = 1000  # frames per morph of eval interp: its evenness shows in a few dozen; more only take time

# Float copies of the whole animation held at once at its peak: the frames,
# their resized copy, and the clamped and scaled copies made on the way to 8 bits
# (16 frames at 2048 px peaked at 2.96 GB: 3.7 copies).
FLOAT_COPIES = 4
DECODE_BATCH = 64  # latents decoded at a time while a progress bar follows


@click.command("interpolate", short_help="Morph between images, or walk between a model's samples.")
@click.argument("images", nargs=-1, type=CheckedPath())
@latent_model_option("faces64-vae")
@click.option("--seeds", help="Walk between random samples of the model instead of images: seeds separated by commas "
                              "(1,5,9), each from 0 to 2**32 - 1.")
@click.option("--frames", type=click.IntRange(min=2), default=16, show_default=True,
              help="Frames per transition, both ends included (K keyframes: (K-1)*(frames-1)+1 frames).")
@click.option("--loop", is_flag=True, help="Return to the first keyframe (its frame is not repeated: the animation loops seamlessly).")
@click.option("--ease", type=click.Choice(["even", "linear", "smooth", "sine"]), default="even", show_default=True,
              help="Pacing of each transition: even = every frame changes the picture equally; linear = equal "
                   "steps in the latent space; smooth, sine = slowing down at the keyframes.")
@click.option("--fps", type=FiniteFloat(min=0.1, max=120), default=12.0, show_default=True,
              help="Frames per second (a GIF plays at most 50).")
@click.option("--size", type=click.IntRange(min=8, max=4096), help="Frame size in px (default: the model's, e.g. 64).")
@click.option("-o", "--output", type=CheckedPath(), required=True,
              help="A .gif, .webp or .mp4 file, or a folder for numbered PNG frames.")
@device_option()
@threads_option("CPU threads for encoding, inverting and decoding (default: torch's choice, one per core).")
@click.option("--overwrite", is_flag=True, help="Replace existing output.")
@click.option("-q", "--quiet", is_flag=True, help="Print only errors.")
def interpolate_command(images, model, seeds, frames, loop, ease, fps, size, output, device, overwrite, quiet,
                        threads=None):
    """Morph between images, or walk between random samples, through a model's latent space.

    IMAGES are files, folders (their images in name order) or globs.
    Images are centre-cropped to squares and encoded (a GAN inverts them by
    optimisation, which takes a few seconds per image); every frame is
    decoded from a point between their latents, spherically for Gaussian
    latents.

    \b
    Examples:
      imgedit interpolate a.jpg b.jpg --frames 16 -o morph.gif
      imgedit interpolate a.jpg b.jpg c.jpg --loop --size 256 -o morph.mp4
      imgedit interpolate faces/ --loop -o faces.webp
      imgedit interpolate --model faces64-gan --seeds 1,5,9 --frames 30 -o a.webp
    """
    from imgedit.devices import resolve_device, set_threads
    from imgedit.verbs import StageProgress
    from imgedit_interp.animation import GIF_MAX_FPS, check_free, output_kind, output_notes, write_animation
    from imgedit_interp.morph import frame_count

    set_threads(threads)

    if quiet:
        logging.getLogger("imgedit").setLevel(logging.ERROR)  # "print only errors": no warnings either
    if images and seeds:
        raise UsageError("give images or --seeds, not both")
    paths = _keyframe_paths(images)
    seed_list = _parse_seeds(seeds) if seeds else []
    if len(paths) + len(seed_list) < 2:
        raise UsageError("give at least two images (or two --seeds) to interpolate between")
    total = frame_count(len(paths) or len(seed_list), frames, loop)
    check_free(output, overwrite)  # a bad suffix, an unwritable place or an existing output fails before any work
    to_folder = output_kind(output) == "folder"
    if to_folder and typed_option("fps"):
        logging.getLogger("imgedit").warning(f"ignoring --fps: a folder of PNG frames has no frame rate; "
                                             f"write a .gif, .webp or .mp4 to play at {fps:g} fps")
    if size:
        _check_memory(total, size)  # before the model loads
    with sigterm_as_interrupt(f"{output} is left as it was"):
        loaded = load_latent_model_argument(model, resolve_device(device))
        side = size or loaded.image_size[0]
        _check_memory(total, side)  # before the minutes of inverting and pacing
        for note in output_notes(output, fps, side, side):  # now, not after the work: there is time to change -o
            logging.getLogger("imgedit").warning(note)
        keys, what = _keyframe_latents(loaded, paths, seed_list, quiet)
        video = _frames(loaded, keys, frames, loop, ease, size, quiet)
        with StageProgress(len(video), "writing", "frame", quiet) as advance:
            written = write_animation(video, output, fps=fps, overwrite=overwrite, on_frame=advance,
                                      source_mode=_shared_mode(paths))
    played = min(fps, GIF_MAX_FPS) if output_kind(output) == "gif" else fps
    rate = "" if to_folder else f", {played:g} fps"  # numbered PNGs have none
    where = output if len(written) == 1 else f"{output}/ ({written[0].name} ...)"
    if not quiet:
        click.echo(printable(f"wrote {total} frames ({video.shape[-1]}x{video.shape[-2]}{rate}) morphing "
                             f"{what} with {model} to {where}"), err=True)



def _keyframe_latents(model, paths: list[Path], seeds: list[int], quiet: bool):
    """(latents of the keyframes, what they are for the closing line): the seeds' samples, or the images encoded."""
    import torch

    if seeds:
        return torch.cat([model.sample_latents(1, s) for s in seeds]), f"seeds {','.join(map(str, seeds))}"
    targets = _read_keyframes(paths, model.image_size[0]).to(model.device)
    keys = _encode(model, targets, quiet)
    if not quiet:
        _report_encoding(model, targets, keys, paths)
    return keys, f"{len(paths)} images"


def _frames(model, keys, frames: int, loop: bool, ease: str, size: Optional[int], quiet: bool):
    """The animation ``(N, 3, S, S)`` on the CPU: the path's latents decoded, resized to ``size``."""
    import torch

    from imgedit.verbs import StageProgress

    latents = _path(model, keys, frames, loop, ease, quiet)
    with StageProgress(len(latents), "decoding", "frame", quiet) as advance:
        video = _decode(model, latents, advance).cpu()
    if size and size != video.shape[-1]:
        video = torch.nn.functional.interpolate(video, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1)
    return video


def _report_encoding(model, targets, keys, paths) -> None:
    """Say how close each image's latent decodes to it (a GAN's inversion can miss)."""
    from imgedit_interp.evaluate import psnr as psnr_of

    psnr = psnr_of(model.decode(keys), targets)
    how = "inverted" if getattr(model, "last_inversion_psnr", None) is not None else "encoded"
    click.echo(printable(f"{how} into {getattr(model, 'name', '') or 'the model'} (PSNR of each decoded latent against its "
                         "cropped, resized image): " + ", ".join(f"{p.name} {v:.1f} dB" for p, v in zip(paths, psnr.tolist()))),
               err=True)


def _check_memory(frames: int, side: int) -> None:
    """Refuse an animation whose frames would not fit in memory (it is held whole, as floats)."""
    from imgedit.devices import check_fits_in_memory

    check_fits_in_memory(frames * side * side * 3 * 4 * FLOAT_COPIES, f"{frames} frames of {side}x{side}",
                         "ask for fewer --frames or a smaller --size")


def _check_eval_memory(pairs: int, frames: int, side: int) -> None:
    """Refuse an ``eval interp`` whose morphs would not fit in memory: each
    pair's morph and cross-fade are kept for the sheet, and one pair's path
    is worked on in several more copies."""
    from imgedit.devices import check_fits_in_memory

    check_fits_in_memory((2 * pairs + FLOAT_COPIES) * frames * side * side * 3 * 4,
                         f"{pairs} morphs of {frames} frames of {side}x{side}", "ask for fewer --frames or --pairs")


def _encode(model, targets, quiet: bool):
    """The keyframes' latents, with a progress bar where the model encodes by
    optimisation and says how many steps it takes (a GAN: seconds per image)."""
    import inspect

    from imgedit.verbs import StageProgress

    steps = getattr(model, "inversion_steps", None)
    if not steps or "on_step" not in inspect.signature(model.encode).parameters:
        return model.encode(targets)
    with StageProgress(steps, f"inverting {len(targets)} images", "step", quiet) as advance:
        return model.encode(targets, on_step=advance)


def _decode(model, latents, advance):
    """``model.decode`` a batch at a time, ``advance``-ing a progress bar."""
    import torch

    parts = []
    for chunk in latents.split(DECODE_BATCH):
        parts.append(model.decode(chunk))
        advance(len(chunk))
    return torch.cat(parts)


def _path(model, keys, frames: int, loop: bool, ease: str, quiet: bool):
    """:func:`~imgedit_interp.morph.path_latents` with a progress bar over
    ``even``'s pacing (decoding and measuring a dense path: the long part)."""
    from imgedit_interp.morph import dense_points, path_latents

    if ease != "even":
        return path_latents(keys, frames, loop=loop, spherical=model.gaussian, ease=ease)
    from imgedit.features import ENSEMBLE_SEEDS, ensemble_features
    from imgedit.verbs import StageProgress

    transitions = len(keys) if loop else len(keys) - 1
    work = transitions * dense_points(frames) * (1 + len(ENSEMBLE_SEEDS))  # decode, then each feature network
    with StageProgress(work, "pacing", "point", quiet) as advance:
        def measure(images):  # ensemble_features, one network at a time (each block is scaled on its own: same rows)
            import torch

            blocks = []
            for seed in ENSEMBLE_SEEDS:
                blocks.append(ensemble_features(images, seeds=(seed,)))
                advance(len(images))
            return torch.cat(blocks, dim=1)

        return path_latents(keys, frames, loop=loop, spherical=model.gaussian, ease=ease,
                            decode=lambda z: _decode(model, z, advance), measure=measure)


@click.command("interp-vae", short_help="Train a VAE with one latent per image, for morphs and walks.")
@apply_options(training_options("Training images: file, folder or glob (repeatable).", 6000, Path("runs") / "interp", 32, 1e-3))
@apply_options(whole_image_options("imgedit eval interp", "my-interp-vae"))
@click.option("--z-dim", type=click.IntRange(2, MAX_Z_DIM), default=256, show_default=True, help="Numbers in one latent.")
@click.option("--beta", type=FiniteFloat(min=0), default=0.005, show_default=True,
              help="KL weight per pixel value: smaller = sharper reconstructions, latents further from N(0, I).")
def train_interp_command(sources, steps, resume, out_dir, overwrite, export_path, device, batch, lr, seed, quiet, size,
                         z_dim, beta, holdout, name, licence):
    """Train a VAE with one global latent per image, for morphs and latent walks.

    Every 500 steps a sheet (originals, reconstructions, midpoints, prior
    samples) goes to OUT/samples/ and a checkpoint to OUT/checkpoint.safetensors,
    which --resume continues exactly.
    """
    from imgedit import registry
    from imgedit.devices import resolve_device
    from imgedit.training import ProgressBar, check_fresh_run, export_target, trained_line
    from imgedit_interp.catalog import CATALOG
    from imgedit_interp.model import FaceVAEConfig
    from imgedit_interp.train import InterpTrainConfig, export_interp_vae, train_interp_vae

    name, target = export_target(CATALOG.export_target(name, export_path, "my-interp-vae"), resume, "interp-vae",
                                 told=bool(name or export_path))
    check_fresh_run(out_dir, resume, overwrite, export=target, kind="interp-vae")
    cfg = InterpTrainConfig(steps=steps, batch=batch, lr=lr, beta=beta, holdout=holdout, seed=seed,
                            model=FaceVAEConfig(image_size=size, z_dim=z_dim))
    started = time.time()
    with ProgressBar(cfg.steps, {"mse": ".4f", "kl": ".0f", "val_psnr": ".2f"}, quiet) as bar:
        trainer = train_interp_vae(cfg, sources, out_dir, resolve_device(device), resume=resume, on_progress=bar,
                                   command=command_line(click.get_current_context()), overwrite=overwrite,
                                   export=(name, target), licence=licence)
    size = trainer.cfg.model.image_size
    export_interp_vae(trainer, target, name=name, description=f"{size}x{size} VAE ({trainer.cfg.model.z_dim}-d latent) trained "
                      f"on {', '.join(map(str, sources))}", sources=list(sources), session_seconds=time.time() - started,
                      licence=licence)
    registry.reset()  # the new model is usable by name at once
    click.echo(trained_line(trainer, target) + "\n" +
               f"Morph with: imgedit interpolate a.jpg b.jpg --model {quote_arg(str(target))} -o morph.gif")


@click.command("interp", short_help="Reconstruction PSNR; how even and face-like a model's morphs are.")
@latent_model_option("faces64-vae")
@click.option("--data", "sources", multiple=True, required=True,
              help="Images the model was NOT trained on: folder, file or glob (repeatable); with --held-out, its held-out split.")
@click.option("--held-out", is_flag=True, help="Use only the images of --data that the model card lists as held out.")
@click.option("--pairs", type=COUNT, default=8, show_default=True, help="Random pairs to morph.")
@click.option("--frames", type=click.IntRange(3, MAX_EVAL_FRAMES), default=9, show_default=True, help="Frames per morph.")
@click.option("--limit", type=COUNT, help="Measure the reconstruction PSNR on at most N images (default: all).")
@seed_option(help="Seed of the random pairs.")
@seed_option(None, flag="--feature-seed",
             help="Judge the steps and distances with the random feature network of this seed (default: imgedit's fixed one), "
                  "to check that the pacing holds for a network that did not place the frames.")
@sheet_option("Write a PNG: for each pair, the morph above the cross-fade.")
@device_option()
@threads_option()
@click.option("--record", is_flag=True, help="Also write the results into the model card's metrics block (refused where "
                                             "that holds held-out figures and these are not, or more images or pairs).")
@click.option("--overwrite", is_flag=True, help="Replace an existing --sheet; with --record, the recorded figures even so.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def eval_interp_command(model, sources, held_out, pairs, frames, limit, seed, feature_seed, sheet, device, threads, record,
                        overwrite, as_json):
    """Reconstruction PSNR, and how even and how face-like a model's morphs
    are beside a pixel cross-fade (definitions: imgedit_interp/evaluate.py).

    \b
    Example:
      imgedit eval interp --data faces/ --held-out --pairs 8 --sheet morphs.png
    """
    import torch

    from imgedit.devices import resolve_device
    from imgedit.features import ENSEMBLE_SEEDS, FEATURE_SEED, FeatureNet
    from imgedit.imageset import held_out_of, load_squares, overlap_warning
    from imgedit.models import record_metrics
    from imgedit_interp import evaluate

    check_overwrite(overwrite, record=record, sheet=sheet)
    check_sheet(sheet, overwrite)  # before the minutes of morphing: failing after them would lose the figures and the --record
    if threads:
        torch.set_num_threads(threads)
    spec = weights_spec(model)
    card = spec.card() if spec is not None else {}
    if record and not card:
        raise UsageError(f"--record: model '{model}' has no model card to record into")
    feature_seed = FEATURE_SEED if feature_seed is None else feature_seed
    if record and feature_seed != FEATURE_SEED:
        raise UsageError("--record keeps the figures of imgedit's fixed feature network; leave out --feature-seed")
    loaded = load_latent_model_argument(model, resolve_device(device))
    real = load_squares(sources, loaded.image_size[0], what="images")
    if held_out:
        real = held_out_of(real, card)
    images = real.images.float() / 255.0
    if len(images) < 4:
        raise UsageError(f"need at least 4 images, found {len(images)}")
    chosen = evaluate.random_pairs(len(images), pairs, seed)
    _check_eval_memory(len(chosen), frames, loaded.image_size[0])  # before the minutes of morphing
    if record:  # before the minutes of morphing
        check_record(spec, "eval_interp",
                     {"held_out": held_out, "images": len(images), "reconstructed": len(images[:limit]), "pairs": len(chosen)},
                     ("images", "reconstructed", "pairs"), overwrite)
    started = time.perf_counter()
    recon = evaluate.reconstruction_psnr(loaded, images[:limit])
    results, videos = evaluate.evaluate_pairs(loaded, images, chosen, frames,
                                              net=FeatureNet(feature_seed))
    report = {"model": model, "data": list(sources), "held_out": held_out, "images": len(images), "reconstructed": len(recon), "seed": seed,
              "feature_seed": feature_seed, "frames": frames, "reconstruction_psnr": round(recon.mean().item(), 3),
              **{k: round(v, 4) if isinstance(v, float) else v for k, v in evaluate.summarise(results).items()},
              "per_pair": [{"a": real.names[r.a], "b": real.names[r.b], "step_ratio": round(r.step_ratio, 3),
                            "fade_step_ratio": round(r.fade_step_ratio, 3),
                            "middle_morph_nn": round(r.middle[0], 3), "middle_fade_nn": round(r.middle[1], 3),
                            "middle_end_fade_nn": round(r.middle[2], 3)}
                           for r in results],
              "seconds": round(time.perf_counter() - started, 1)}
    notes = overlap_warning(card, sources, held_out, spec.card_path if spec is not None else None)
    if feature_seed in ENSEMBLE_SEEDS:
        notes.append(f"--feature-seed {feature_seed} is one of the networks that pace '--ease even': it helped place the "
                     "frames, so its step ratios flatter the pacing")
    if sheet is not None:
        from imgedit.tensor import grid, write_tensor

        rows = torch.cat([torch.cat(pair) for pair in videos[:8]])
        write_tensor(grid(rows, columns=frames), sheet, overwrite=True)
        notes.append(f"sheet: {sheet} (per pair: morph row, then cross-fade row)")
    if record:
        record_metrics(spec, "eval_interp", report)
        notes.append(f"recorded in {spec.card_path}")
    echo_report(report, notes, as_json, lambda: _format_report(report))


def _format_report(r: dict) -> str:
    from imgedit.features import FEATURE_SEED

    lines = [f"{r['model']} on {r['images']} images of {', '.join(r['data'])}{' (held out)' if r['held_out'] else ''}:",
             f"  reconstruction PSNR       {r['reconstruction_psnr']:.2f} dB"
             + (f" (on {r['reconstructed']} of the {r['images']} images: --limit)" if r["reconstructed"] < r["images"] else ""),
             f"  step ratio (max/min)      worst {r['step_ratio_max']:.2f}, mean {r['step_ratio_mean']:.2f} over {r['pairs']} "
             f"morphs of {r['frames']} frames"
             + (f" (feature network of seed {r['feature_seed']})" if r["feature_seed"] != FEATURE_SEED else ""),
             f"  ... of the cross-fade         worst {r['fade_step_ratio_max']:.2f}, mean {r['fade_step_ratio_mean']:.2f} (its steps are "
             f"equal in pixels); the morph is the more even in {r['morph_more_even_than_fade']} of {r['pairs']}",
             f"  middle frame nearer a real image than the cross-fade of the inputs: {r['middle_morph_nearer']} of {r['pairs']} "
             f"(distance {r['middle_morph_nn_mean']:.2f} vs {r['middle_fade_nn_mean']:.2f}); all interior frames: "
             f"{100 * r['interior_morph_nearer_fraction']:.0f}%",
             f"  ... than the cross-fade of its own end frames (same sharpness): {r['middle_morph_nearer_than_end_fade']} of "
             f"{r['pairs']} (distance {r['middle_morph_nn_mean']:.2f} vs {r['middle_end_fade_nn_mean']:.2f})",
             f"  sanity check: the pairs' own real faces nearer a real image than their cross-fade: {r['real_nearer_than_fade']} of "
             f"{2 * r['pairs']} (distance {r['real_nn_mean']:.2f} vs {r['middle_fade_nn_mean']:.2f}); where real faces lose "
             "too, this measure rewards averaging, not realism"]
    labels = [(_pair_label(p["a"]), _pair_label(p["b"])) for p in r["per_pair"]]
    w = max([18, *(len(label) for pair in labels for label in pair)])
    lines.append(f"  {'pair':{2 * w + 1}}  step ratio: morph / fade   middle: morph / fade / end-frame fade")
    for p, (a, b) in zip(r["per_pair"], labels):
        lines.append(f"  {a:{w}} {b:{w}}  {p['step_ratio']:6.2f} / {p['fade_step_ratio']:4.2f}"
                     f"        {p['middle_morph_nn']:.2f} / "
                     f"{p['middle_fade_nn']:.2f} / {p['middle_end_fade_nn']:.2f}")
    return "\n".join(lines)


def _pair_label(name: str, width: int = 28) -> str:
    """A file name short enough for the pair table: UTKFace's suffix or the
    extension dropped, and where still too long, its tail (the part that
    differs: UTKFace's names share the age, gender and date in front)."""
    from imgedit.imageset import UTKFACE_SUFFIX

    label = name[: -len(UTKFACE_SUFFIX)] if name.endswith(UTKFACE_SUFFIX) else Path(name).stem or name
    return label if len(label) <= width else "..." + label[-(width - 3):]


def register(cli: click.Group) -> None:
    from imgedit.verbs import command_group

    cli.add_command(interpolate_command)
    command_group(cli, "train", "Train a plugin's model on your own images.").add_command(train_interp_command)
    command_group(cli, "eval", "Measure a plugin's model on a benchmark set.").add_command(eval_interp_command)
