"""CLI verbs of the VAE plugin: ``imgedit denoise`` (the core's generic
operation verb, shared with other plugins' denoisers), ``imgedit train
denoise|inpaint|sigma`` and ``imgedit eval denoise|inpaint``."""

from __future__ import annotations

import contextlib
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable, Optional

import click

from imgedit.verbs import (COUNT, CheckedPath, FiniteFloat, StageProgress, apply_options, check_overwrite, check_sheet, command_line,
                           device_option, precision_option, seed_option, sheet_option, side, threads_option,
                           training_options)
from imgedit_vae.operations import (DENOISE, DENOISE_COPIES, GRAY_MODEL_NAME, INPAINT, INPAINT_MODEL_NAME, MODEL_NAME,
                                   SIGMA_MODEL_NAME, model_spec)

DEFAULT_RUN_DIR = Path("runs") / "denoise"

def _patch_option(default: int):
    return click.option("--patch", type=side(16), default=default, show_default=True,
                        help="Patch size in px (multiple of 16); images smaller than a patch are skipped.")


def _widths_option(default: str):
    return click.option("--widths", "widths_text", help="Channels at 1/2, 1/4, 1/8, 1/16 resolution, comma-separated "
                                                        f"(default: {default}).")


def _init_option(more: str = ""):
    return click.option("--init", type=CheckedPath(),
                        help=f"Start a new run from trained weights (.safetensors with its card){more}.")


def _loss_option(help: str):
    # imgedit_vae.metrics.RECON_LOSSES, spelt out: importing it would load torch with the CLI
    return click.option("--loss", type=click.Choice(["l1", "mse"]), default="l1", show_default=True, help=help)


def _check_init(init, resume) -> None:
    from imgedit.errors import UsageError

    if init and resume:
        raise UsageError("--init starts a new run and --resume continues one: give one of them")
    if init:  # a missing file, or a photo given as weights, fails before the images load
        from imgedit.catalog import spec_for_file

        if not init.is_file():
            raise UsageError(f"--init {init}: no such weights file")
        spec_for_file(init)


def _sheet_overwrite_option():
    return click.option("--overwrite", is_flag=True, help="Replace an existing --sheet.")


def _eval_precision_option():
    return click.option("--precision", type=click.Choice(["fp32", "bf16"]), default="fp32", show_default=True,
                        help="Score the model computed in bf16 (on a CPU that computes it natively, as "
                             "'--precision bf16' runs it there; elsewhere the verb's rule applies).")


def _precision_scope(precision: str, dev, operation) -> tuple[str, Callable[[], contextlib.AbstractContextManager]]:
    """The precision the eval scores and a factory of the context each model
    call runs in. The precision is resolved as the verb resolves it; bf16 then
    runs under autocast, which is how the verb runs it on the CPU
    (:func:`imgedit.devices.compute_scope`). On a GPU the verb casts instead;
    the eval keeps its fp32 inputs and autocasts there too."""
    import torch

    from imgedit.devices import resolve_precision

    dtype = resolve_precision(precision, dev, operation.capabilities, operation.key)
    if dtype == torch.float32:
        return "fp32", contextlib.nullcontext
    return "bf16", lambda: torch.autocast(dev.type, dtype=dtype)


@click.command("denoise")
@apply_options(training_options("Clean training images: file, folder or glob (repeatable).", 13000, DEFAULT_RUN_DIR, 16, 1e-3))
@_patch_option(96)
@_widths_option("those of the --init weights, else 32,64,80,96")
@_init_option("; with wider --widths, the new channels start so that the output is unchanged; "
              "a --gray run may start from a colour model")
@click.option("--gray", is_flag=True, help="Train a one-channel model for grayscale images (on the images' luminance); "
                                         "'imgedit denoise' uses it for grayscale images beside the colour model.")
@click.option("--gray-share", type=FiniteFloat(0, 1), default=0.15, show_default=True,
              help="Share of a colour model's patches made grayscale, so that it handles gray images too; "
                   "0 gives all of them to colour when a --gray partner takes gray images.")
@_loss_option("Reconstruction loss; mse, the error PSNR measures, is for a last fine-tuning of trained weights.")
@precision_option()
def train_denoise_command(sources, steps, resume, out_dir, overwrite, export_path, device, batch, patch, lr, seed, quiet,
                          widths_text, init, gray, gray_share, loss, precision):
    """Train the denoising VAE on clean images (noise is synthesised)."""
    from functools import partial

    from imgedit_vae.train_denoise import TrainConfig, train

    _check_init(init, resume)
    cfg = TrainConfig(steps=steps, batch=batch, patch=_patch_size(patch), lr=lr, seed=seed, precision=precision,
                      gray_prob=gray_share, loss=loss)
    cfg.model = _with_widths(cfg.model, widths_text, init)
    if gray:
        cfg.model = replace(cfg.model, image_channels=1)
    _train_and_export(
        partial(train, init=init), cfg, sources, out_dir, resume, overwrite, export_path, device, quiet,
        kind="denoise", name=GRAY_MODEL_NAME if gray else MODEL_NAME,
        description=f"Conditional VAE denoiser{' for grayscale images' if gray else ''} (noise-level map input, sigma 0-75)",
    )


def _with_widths(model, text: Optional[str], init: Optional[Path] = None):
    """``model`` (a VAEConfig) with the ``--widths`` given; without them, those
    of the ``--init`` weights (their card's), so that a run from a wider model
    than the default widths starts at once; else the default ones."""
    if text:
        return replace(model, widths=_per_level(text, len(model.widths), "--widths"))
    if init:
        from imgedit.catalog import spec_for_file

        widths = (spec_for_file(init).card().get("model_config") or {}).get("widths")
        if isinstance(widths, list) and len(widths) == len(model.widths) and all(isinstance(w, int) and w > 0 for w in widths):
            return replace(model, widths=tuple(widths))
    return model


def _per_level(text: str, levels: int, option: str) -> tuple[int, ...]:
    """One positive whole number per level, from ``"32,64,128,192"``."""
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise click.BadParameter(f"must be {levels} whole numbers separated by commas, got {text!r}",
                                 param_hint=f"'{option}'") from None
    if len(values) != levels or min(values) < 1:
        raise click.BadParameter(f"must be {levels} positive whole numbers separated by commas, got {text!r}",
                                 param_hint=f"'{option}'")
    return values


@click.command("inpaint", short_help="Train the inpainting VAE and its critic on complete images.")
@apply_options(training_options("Training images: file, folder or glob (repeatable); holes are synthesised.",
                                3000, Path("runs") / "inpaint", 8, 5e-4))
@_patch_option(128)
@_widths_option("those of the --init weights, else 32,64,128,192")
@click.option("--bridge/--no-bridge", default=True, show_default=True,
              help="Feed the encoder's deepest features to the decoder beside the latent, as the shipped model does "
                   "(a 1x1 conv that starts at zero, so --init weights without it give the same fills).")
@click.option("--decoder-blocks", "decoder_blocks_text",
              help="Residual blocks per level in the decoder (at 1/2, 1/4, 1/8, 1/16), comma-separated "
                   "(default: 1,2,2,2, as in the encoder).")
@_init_option("; with wider --widths, more --decoder-blocks or a new bridge, the new parts start so that the "
              "output is unchanged; the critic starts afresh")
@_loss_option("Reconstruction loss of the deterministic fill (random fills keep L1 and the critic); "
              "mse, the error PSNR measures, fits it to the mean of the plausible fills.")
@click.option("--masks", "kinds_text", default="thin,medium,thick", show_default=True,
              help="Hole kinds to train on, comma-separated, each drawn equally often; "
                   "name a kind twice to draw it twice as often.")
@click.option("--zoom", type=FiniteFloat(min=1.0), default=1.0, show_default=True,
              help="Cut patches from squares up to this many times wider than --patch (log-uniform) and scale "
                   "them down: the fill works on wide holes at a fraction of full size, and so sees photos that way.")
@click.option("--sample-every", type=COUNT, default=1, show_default=True,
              help="Train the random fills (posterior sample, KL, critic) every this many steps; the steps between "
                   "fit the default fill alone, at about a third of the cost.")
@precision_option()
def train_inpaint_command(sources, steps, resume, out_dir, overwrite, export_path, device, batch, patch, lr, seed, quiet,
                          widths_text, bridge, decoder_blocks_text, init, loss, kinds_text, zoom, sample_every, precision):
    """Train the inpainting VAE (with its critic) on complete images; holes are synthesised."""
    from functools import partial

    from imgedit_vae.train_inpaint import InpaintTrainConfig, train_inpaint

    _check_init(init, resume)
    cfg = InpaintTrainConfig(steps=steps, batch=batch, patch=_patch_size(patch), lr=lr, seed=seed, loss=loss,
                             precision=precision, kinds=_hole_kinds(kinds_text), zoom=zoom,
                             sample_every=sample_every)
    cfg.model = _with_widths(cfg.model, widths_text, init)
    cfg.model = replace(cfg.model, bridge=bridge)
    if decoder_blocks_text:
        cfg.model = replace(cfg.model, decoder_blocks=_per_level(decoder_blocks_text, len(cfg.model.blocks), "--decoder-blocks"))
    _train_and_export(
        partial(train_inpaint, init=init), cfg, sources, out_dir, resume, overwrite, export_path, device, quiet,
        kind="inpaint", name="inpaint-vae",
        description="Conditional VAE inpainter (several plausible fills; prior mean = deterministic fill)",
        storage="float16",  # 5 M parameters: half the file, fills differ by < 1/255
    )


@click.command("sigma", short_help="Train a noise-level estimator for 'denoise --sigma auto'.")
@apply_options(training_options("Clean training images: file, folder or glob (repeatable); noise (and JPEG) is synthesised.",
                                4000, Path("runs") / "sigma", 32, 1e-3))
@click.option("--loss", type=click.Choice(["sqrt", "l1"]), default="sqrt", show_default=True,
              help="L1 on sqrt(sigma) (weighs low levels more) or on sigma.")
@click.option("--jpeg-share", type=FiniteFloat(0, 1), default=0.3, show_default=True,
              help="Share of noisy patches saved as JPEG (quality 60-98) before the estimator reads them.")
def train_sigma_command(sources, steps, resume, out_dir, overwrite, export_path, device, batch, lr, seed, quiet, loss,
                        jpeg_share):
    """Train a learned noise-level estimator (noise and JPEG are synthesised), like the sigma-net that 'denoise --sigma auto' uses."""
    from imgedit_vae.train_sigma import TrainConfig, train

    cfg = TrainConfig(steps=steps, batch=batch, lr=lr, seed=seed, loss=loss, jpeg_prob=jpeg_share)
    _train_and_export(train, cfg, sources, out_dir, resume, overwrite, export_path, device, quiet, kind="sigma",
                      name=SIGMA_MODEL_NAME, description="Noise-level estimator (tiny CNN on patches, sigma 0-75, "
                                                          "Gaussian, clipped, JPEG)",
                      shown={"loss": ".4f", "val_mae": ".2f"},
                      use_hint="Use it: imgedit denoise photo.jpg --sigma-weights")


def _hole_kinds(text: str) -> tuple[str, ...]:
    """The hole kinds named by a --masks value, in order, repeats kept."""
    from imgedit_vae.holes import KINDS

    kinds = tuple(k.strip() for k in text.split(",") if k.strip())
    if not kinds or set(kinds) - set(KINDS):
        raise click.BadParameter(f"must be some of {', '.join(KINDS)}, got {text!r}", param_hint="'--masks'")
    return kinds


def _patch_size(patch: int) -> int:
    from imgedit.errors import UsageError

    if patch % 16:
        raise UsageError(f"--patch must be a multiple of 16, got {patch}")
    return patch


def _train_and_export(train, cfg, sources, out_dir, resume, overwrite, export_path, device, quiet, *, kind, name,
                      description, storage=None, shown=None, use_hint=None) -> None:
    """Run a training routine with a progress bar, then export its weights and model card."""
    from imgedit.shell import quote_arg

    from imgedit.devices import resolve_device
    from imgedit.training import ProgressBar, check_fresh_run, run_export, trained_line
    from imgedit_vae.export import default_export_path, export_vae

    own = run_export(resume, kind)
    name = own[0] if own else name  # a resumed --gray run is gray without --gray: its config is the checkpoint's
    target = export_path or (own[1] if own else default_export_path(name))
    check_fresh_run(out_dir, resume, overwrite, export=target, kind=kind)  # before the images load
    dev = resolve_device(device)
    started = time.time()
    command = command_line(click.get_current_context())
    with ProgressBar(cfg.steps, shown or {"loss": ".4f", "val_psnr": ".2f"}, quiet) as bar:
        trainer = train(cfg, sources, out_dir, dev, resume=resume, on_progress=bar, command=command, overwrite=overwrite,
                        export=(name, target))
    export_vae(trainer, target, name=name, description=description, sources=list(sources),
               session_seconds=time.time() - started, storage=storage or "float32")
    click.echo(trained_line(trainer, target) + "\n"
               + (f"Use it: imgedit {kind} photo.jpg --weights {quote_arg(str(target))}" if use_hint is None else
                  f"{use_hint} {quote_arg(str(target))}"))


def _sigmas(value: str) -> list[float]:
    try:
        sigmas = [float(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"must be numbers separated by commas, got {value!r}", param_hint="'--sigma'") from None
    if not sigmas or any(not 0 <= s <= 255 for s in sigmas):
        raise click.BadParameter(f"each sigma must be in [0, 255], got {value!r}", param_hint="'--sigma'")
    return sigmas


def ensemble_option(verb: str, default: Optional[int]):
    return click.option("--ensemble", type=click.IntRange(1, 8), default=default, show_default=default is not None,
                        help=f"Score the model averaged over N flipped/rotated copies, as '{verb} --ensemble N' runs it"
                        + ("." if default is not None else f" (default: as '{verb}' runs it)."))


def ensemble_note(ensemble: Optional[int]) -> str:
    """The copies a report's figures rest on, for its header ("" for as the verb runs it)."""
    return "" if ensemble is None else f"{ensemble} cop{'y' if ensemble == 1 else 'ies'}, "


@click.command("denoise", short_help="PSNR/SSIM and speed of the denoiser on synthetic noise.")
@click.option("--data", "sources", multiple=True, required=True, help="Clean test images: file, folder or glob (repeatable).")
@click.option("--sigma", "sigma_text", default="15,25,50", show_default=True, help="Noise levels (0-255), comma-separated.")
@click.option("--baselines/--no-baselines", default=False, show_default=True,
              help="Also score OpenCV NLM (and scikit-image wavelet/TV when installed); NLM is slow.")
@click.option("--clip", is_flag=True, help="Clip and round the noisy input to 8 bits first, as a noisy file is.")
@seed_option(help="Seed of the synthetic noise (the same noise for every method).")
@click.option("--limit", type=COUNT, help="Use only the first N images.")
@click.option("--weights", type=CheckedPath(),
              help="Weights to score (default: the shipped models, the grayscale one for grayscale images).")
@ensemble_option("denoise", DENOISE_COPIES)
@device_option()
@threads_option()
@_eval_precision_option()
@sheet_option("Also write a contact sheet (noisy | methods | clean) at the first sigma.")
@_sheet_overwrite_option()
@click.option("--json", "as_json", is_flag=True, help="Print JSON rows.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def eval_denoise_command(sources, sigma_text, baselines, clip, seed, limit, weights, ensemble, device, threads, precision, sheet,
                         overwrite, as_json, quiet):
    """PSNR/SSIM and speed of the denoiser on clean images with synthetic noise."""
    import json

    import torch

    from imgedit.devices import resolve_device
    from imgedit_vae.denoise import denoise_vae, load_denoisers
    from imgedit_vae.evaluate_denoise import baseline_methods, evaluate, format_table, load_clean, rows_as_dicts

    sigmas = _sigmas(sigma_text)
    check_overwrite(overwrite, sheet=sheet)
    check_sheet(sheet, overwrite)  # before the minutes of evaluating
    if threads:
        torch.set_num_threads(threads)
    dev = resolve_device(device)
    model, gray_model = load_denoisers(dev, weights)  # as 'imgedit denoise' picks them
    precision, scope = _precision_scope(precision, dev, DENOISE)
    specs = [model_spec(weights)] + ([model_spec(name=GRAY_MODEL_NAME)] if gray_model is not None else [])
    scored = [_label(specs[0])] + [f"{_label(spec)} for grayscale images" for spec in specs[1:]]
    trained_on = _overlap_notes(specs, sources)

    def vae(noisy: torch.Tensor, sigma: float) -> torch.Tensor:
        with torch.inference_mode(), scope():
            out = denoise_vae(noisy.to(dev), model, sigma, ensemble=ensemble, gray_model=gray_model)
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
        return out.cpu()

    methods = {"vae": vae, **(baseline_methods() if baselines else {})}
    images = load_clean(sources, limit)
    # a bar on a terminal, a line every few seconds in a log file
    with StageProgress(len(images) * len(sigmas), "eval denoise", "image", quiet=quiet or as_json) as advance:
        rows = evaluate(images, sigmas, methods, seed=seed, clip=clip, on_image=lambda: advance(1))
    if sheet:
        from imgedit.tensor import write_tensor
        from imgedit_vae.evaluate_denoise import contact_sheet

        write_tensor(contact_sheet(images, sigmas[0], methods, seed=seed, clip=clip), sheet, overwrite=True)
        if not as_json:
            click.echo(f"contact sheet (noisy | {' | '.join(methods)} | clean) at sigma {sigmas[0]:g}: {sheet}")
    if as_json:
        click.echo(json.dumps({"data": list(sources), "models": scored, "clip": clip, "seed": seed, "ensemble": ensemble,
                               "device": str(dev), "precision": precision, "notes": trained_on,
                               "rows": rows_as_dicts(rows)}, indent=2))
    else:
        where = ", ".join(map(str, sources))
        # OpenCV's NLM takes 8 bits only: unclipped, the model is given what NLM is not (0.1 dB at sigma 50)
        nlm_clipped = "; nlm given it clipped to 8 bits" if "nlm" in methods and not clip else ""
        click.echo(format_table(rows, f"{where}: {len(images)} images, seed {seed}, noisy input {'clipped to 8 bits' if clip else 'not clipped'}"
                                f"{nlm_clipped}, {ensemble_note(ensemble)}{dev}, {precision}; vae = {' + '.join(scored)}"))
        for note in trained_on:
            click.echo(note)


def _overlap_notes(specs, sources) -> list[str]:
    """The warning where ``sources`` are one of the models' training data (the first model's that says so)."""
    from imgedit.imageset import overlap_warning

    return next((said for spec in specs if (said := overlap_warning(spec.card(), sources, False, spec.card_path))), [])


def _label(spec) -> str:
    """A model as the eval reports name it: its name and the start of its sha256."""
    return f"{spec.name} ({spec.card().get('sha256', '?')[:12]})"


@click.command("inpaint", short_help="PSNR/SSIM and time of the inpainter beside classical fills.")
@click.option("--data", "sources", multiple=True, help="Complete images to punch random holes in: file, folder or glob (repeatable).")
@click.option("--masks", "kinds_text", default="thin,medium,thick", show_default=True, help="Hole kinds for --data, comma-separated.")
@click.option("--pairs", "pairs_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), help="Ready-made pairs: DIR/**/images/NAME.* with DIR/**/masks/NAME.*.")
@click.option("--hole-color", type=click.Choice(["white", "black"]), help="Colour of the hole in the --pairs masks, "
              "required with --pairs (EdgeConnect, LaMa: white; MI-GAN: black).")
@seed_option(help="Seed of the random masks.")
@click.option("--limit", type=COUNT, help="Use only the first N images (per set for --pairs).")
@click.option("--baselines/--no-baselines", default=True, show_default=True,
              help="Also score Telea, NS (and biharmonic when scikit-image is installed), or the model only.")
@click.option("--weights", type=CheckedPath(), help="Weights to score (default: the shipped model).")
@ensemble_option("inpaint", None)
@device_option()
@threads_option()
@_eval_precision_option()
@sheet_option("Also write a contact sheet (input | fills | truth).")
@_sheet_overwrite_option()
@click.option("--json", "as_json", is_flag=True, help="Print JSON rows.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def eval_inpaint_command(sources, kinds_text, pairs_dir, hole_color, seed, limit, baselines, weights, ensemble, device, threads,
                         precision, sheet, overwrite, as_json, quiet):
    """PSNR/SSIM (whole image and hole) and time of the inpainter beside Telea, NS and
    (when scikit-image is installed) biharmonic fills."""
    import json

    import torch

    from imgedit.devices import resolve_device
    from imgedit.errors import UsageError
    from imgedit_vae.evaluate_denoise import load_clean
    from imgedit_vae.evaluate_inpaint import classical_methods, evaluate, format_table, pair_cases, rows_as_dicts, synthetic_cases
    from imgedit_vae.inpaint import inpaint_vae, load_inpainter

    if not sources and not pairs_dir:
        raise UsageError("give --data DIR (random holes) or --pairs DIR (image/mask pairs)")
    if pairs_dir and hole_color is None:  # a guess swaps hole and known pixels and scores plausible, wrong numbers
        raise UsageError("--pairs needs --hole-color white|black, the hole's colour in its masks (EdgeConnect, LaMa: "
                         "white; MI-GAN: black)")
    kinds = list(dict.fromkeys(_hole_kinds(kinds_text)))  # each kind scored once
    check_overwrite(overwrite, sheet=sheet)
    check_sheet(sheet, overwrite)  # before the minutes of evaluating
    if threads:
        torch.set_num_threads(threads)
    dev = resolve_device(device)
    model = load_inpainter(dev, weights)
    precision, scope = _precision_scope(precision, dev, INPAINT)

    def vae(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        with scope():
            out = inpaint_vae(image.to(dev), mask.to(dev), model, ensemble=ensemble)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        return out.cpu()

    methods = {"vae": vae, **(classical_methods() if baselines else {})}
    cases, notes = [], _overlap_notes([model_spec(weights, name=INPAINT_MODEL_NAME)], sources)
    if sources:
        cases += synthetic_cases(load_clean(sources, limit), kinds, seed)
    if pairs_dir:
        pairs = pair_cases(pairs_dir, hole_color, limit)
        cases += pairs
        notes.append(f"masks: hole = {hole_color}")
        unscored = sum(not c.scored for c in pairs)
        if unscored:
            notes.append(f"{unscored} pairs have the hole painted over (no ground truth there): not scored"
                         + (", shown on the contact sheet" if sheet else ""))
    where = ", ".join([*map(str, sources), *([str(pairs_dir)] if pairs_dir else [])])
    nothing = None if any(c.scored for c in cases) else f"nothing to score in {where}: " + (
        f"each of the {len(cases)} pairs has the hole painted over (no ground truth there)" if cases
        else "no pair with a hole (see the warnings)")
    if nothing and not (sheet and cases):  # before any fill runs
        raise UsageError(nothing + ("; use --sheet FILE to look at the fills" if cases else ""))
    with StageProgress(len(cases), "eval inpaint", "image", quiet=quiet or as_json) as advance:
        rows = evaluate(cases, methods, on_case=lambda: advance(1))
    if sheet:
        from imgedit.tensor import write_tensor
        from imgedit_vae.evaluate_inpaint import contact_sheet

        shown = [c for c in cases if c.group == cases[0].group] if sources else cases
        write_tensor(contact_sheet(shown, methods), sheet, overwrite=True)
        notes.append(f"contact sheet (input | {' | '.join(methods)} | truth): {sheet}")
    if nothing:  # the sheet asked for is written; still, no figure came out
        raise UsageError(f"{nothing}; only the contact sheet was written: {sheet}")
    if as_json:
        click.echo(json.dumps({"data": list(sources), "pairs": str(pairs_dir or ""), "seed": seed, "ensemble": ensemble, "device": str(dev),
                               "precision": precision, "notes": notes, "rows": rows_as_dicts(rows)}, indent=2))
    else:
        holes = f"mask seed {seed}, " if sources else ""  # the pairs bring their own holes
        click.echo(format_table(rows, f"{where}: {len(cases)} cases, {holes}{ensemble_note(ensemble)}{dev}, {precision}"))
        for note in notes:
            click.echo(note)


def register(cli: click.Group) -> None:
    from imgedit.verbs import add_operation_verb, command_group

    add_operation_verb(cli, "denoise")  # the host's verbs (imgedit.verbs.SHARED_VERB_HELP), which imgedit_classical
    add_operation_verb(cli, "inpaint")  # adds too: each works with either plugin left out
    training = command_group(cli, "train", "Train a plugin's model on your own images.")
    training.add_command(train_denoise_command)
    training.add_command(train_inpaint_command)
    training.add_command(train_sigma_command)
    evaluations = command_group(cli, "eval", "Measure a plugin's model on a benchmark set.")
    evaluations.add_command(eval_denoise_command)
    evaluations.add_command(eval_inpaint_command)
