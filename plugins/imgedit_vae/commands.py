"""CLI verbs of the VAE plugin: ``imgedit denoise`` (shared with other
plugins' denoisers), ``imgedit train denoise`` and ``imgedit eval denoise``."""

from __future__ import annotations

import shlex
import time
from pathlib import Path
from typing import Optional

import click

DEFAULT_RUN_DIR = Path("runs") / "denoise"


def _command_line(ctx: click.Context) -> str:
    """The command with every option spelled out, for the model card."""
    words = ["imgedit", *ctx.command_path.split()[1:]]
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        if value is None or value is False or value == ():
            continue
        flag = max(param.opts, key=len)
        for item in value if isinstance(value, tuple) else [value]:
            words += [flag] if value is True else [flag, str(item)]
    return " ".join(shlex.quote(w) for w in words)


@click.command("denoise")
@click.option("--data", "sources", multiple=True, required=True, help="Clean training images: file, folder or glob (repeatable).")
@click.option("--steps", type=click.IntRange(min=1), default=13000, show_default=True, help="Total optimisation steps.")
@click.option("--resume", type=click.Path(path_type=Path), help="Checkpoint to continue from.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=DEFAULT_RUN_DIR, show_default=True, help="Folder for the checkpoint and log.")
@click.option("--export", "export_path", type=click.Path(path_type=Path), help="Where to write the trained weights (default: your imgedit weights folder).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N or mps.")
@click.option("--batch", type=click.IntRange(min=1), default=16, show_default=True)
@click.option("--patch", type=click.IntRange(min=16), default=96, show_default=True, help="Patch size in px (multiple of 16).")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=1e-3, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def train_denoise_command(sources, steps, resume, out_dir, export_path, device, batch, patch, lr, seed, quiet):
    """Train the denoising VAE on clean images (noise is synthesised)."""
    import torch
    from tqdm import tqdm

    from imgedit.devices import resolve_device
    from imgedit.errors import UsageError
    from imgedit_vae.export import default_export_path, export_model
    from imgedit_vae.train_denoise import TrainConfig, train

    if patch % 16:
        raise UsageError(f"--patch must be a multiple of 16, got {patch}")
    cfg = TrainConfig(steps=steps, batch=batch, patch=patch, lr=lr, seed=seed)
    dev = resolve_device(device)
    bar = tqdm(total=steps, disable=quiet, unit="step", dynamic_ncols=True)
    last = {}

    def progress(step: int, metrics: dict) -> None:
        if bar.n == 0 and step > 1:
            bar.update(step - 1)  # resumed
        if metrics.get("val_psnr") is not None:
            last["val"] = metrics["val_psnr"]
        bar.set_postfix(loss=f"{metrics['loss']:.4f}", val_psnr=f"{last.get('val', float('nan')):.2f}")
        bar.update(1)

    started = time.time()
    command = _command_line(click.get_current_context())
    try:
        trainer = train(cfg, sources, out_dir, dev, resume=resume, on_progress=progress, command=command)
    finally:
        bar.close()
    target = export_path or default_export_path("denoise-vae")
    export_model(
        trainer,
        target,
        name="denoise-vae",
        description="Conditional VAE denoiser (noise-level map input, sigma 0-75)",
        sources=list(sources),
        session_seconds=time.time() - started,
    )
    click.echo(f"Trained {trainer.step} steps ({trainer.elapsed / 60:.1f} min); weights: {target}")


def _sigmas(value: str) -> list[float]:
    try:
        sigmas = [float(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"must be numbers separated by commas, got {value!r}") from None
    if not sigmas or any(not 0 <= s <= 255 for s in sigmas):
        raise click.BadParameter(f"each sigma must be in [0, 255], got {value!r}")
    return sigmas


@click.command("denoise")
@click.option("--data", "sources", multiple=True, required=True, help="Clean test images: file, folder or glob (repeatable).")
@click.option("--sigma", "sigma_text", default="15,25,50", show_default=True, help="Noise levels (0-255), comma-separated.")
@click.option("--baselines", is_flag=True, help="Also score OpenCV NLM (and scikit-image wavelet/TV when installed).")
@click.option("--clip", is_flag=True, help="Clip and round the noisy input to 8 bits first, as a noisy file is.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--limit", type=click.IntRange(min=1), help="Use only the first N images.")
@click.option("--weights", type=click.Path(path_type=Path), help="Weights to score (default: the shipped model).")
@click.option("--device", default="auto", show_default=True)
@click.option("--threads", type=click.IntRange(min=1), help="CPU threads.")
@click.option("--sheet", type=click.Path(path_type=Path), help="Also write a contact sheet (noisy | methods | clean) at the first sigma.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON rows.")
def eval_denoise_command(sources, sigma_text, baselines, clip, seed, limit, weights, device, threads, sheet, as_json):
    """PSNR/SSIM and speed of the denoiser on clean images with synthetic noise."""
    import json

    import torch
    from tqdm import tqdm

    from imgedit.devices import resolve_device
    from imgedit_vae.denoise import denoise_vae, load_denoiser
    from imgedit_vae.evaluate_denoise import baseline_methods, evaluate, format_table, load_clean, rows_as_dicts

    sigmas = _sigmas(sigma_text)
    if threads:
        torch.set_num_threads(threads)
    dev = resolve_device(device)
    model = load_denoiser(dev, weights)

    def vae(noisy: torch.Tensor, sigma: float) -> torch.Tensor:
        with torch.inference_mode():
            out = denoise_vae(noisy.to(dev), model, sigma)
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
        return out.cpu()

    methods = {"vae": vae, **(baseline_methods() if baselines else {})}
    images = load_clean(sources, limit)
    with tqdm(total=len(images) * len(sigmas), disable=as_json, leave=False, unit="img") as bar:
        rows = evaluate(images, sigmas, methods, seed=seed, clip=clip, on_image=lambda: bar.update(1))
    if sheet:
        from imgedit.imageio import Picture, write_image
        from imgedit_vae.evaluate_denoise import contact_sheet

        grid = contact_sheet(images, sigmas[0], methods, seed=seed, clip=clip)
        write_image(Picture(rgb=grid.permute(1, 2, 0).numpy()), sheet, overwrite=True)
        if not as_json:
            click.echo(f"contact sheet (noisy | {' | '.join(methods)} | clean) at sigma {sigmas[0]:g}: {sheet}")
    if as_json:
        click.echo(json.dumps({"data": list(sources), "clip": clip, "seed": seed, "device": str(dev), "rows": rows_as_dicts(rows)}, indent=2))
    else:
        where = ", ".join(map(str, sources))
        click.echo(format_table(rows, f"{where}: {len(images)} images, seed {seed}, noisy input {'clipped to 8 bits' if clip else 'not clipped'}, {dev}"))


def register(cli: click.Group) -> None:
    from imgedit.verbs import add_operation_verb, command_group

    add_operation_verb(cli, "denoise", help="Remove noise from images (--sigma N on the 0-255 scale, or auto).")
    command_group(cli, "train", "Train a plugin's model on your own images.").add_command(train_denoise_command)
    command_group(cli, "eval", "Measure a plugin's model on a benchmark set.").add_command(eval_denoise_command)
