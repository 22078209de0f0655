"""``imgedit eval style`` end to end: load the photos and every style's
network and painting, measure (:mod:`imgedit_style.evaluate`), write the
contact sheet, record into the model cards, format the report."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import torch

from imgedit.errors import UsageError
from imgedit.models import ModelSpec
from imgedit.verbs import check_record
from imgedit_style import evaluate
from imgedit_style.catalog import resolve_style, styles
from imgedit_style.losses import StyleLossConfig
from imgedit_style.lossnet import LossNetConfig, build_loss_net
from imgedit_style.optimize import StyleObjective, optimise_image, resize_long_side
from imgedit_style.stylize import load_style_net, read_style_image, stylise


def load_photos(sources: list[str], limit: int, size: int) -> tuple[list[str], list[torch.Tensor]]:
    """The first ``limit`` images of ``sources`` (sorted by path), long side ``size`` px."""
    from imgedit.imageio import read_image
    from imgedit.inputs import expand_inputs
    from imgedit.tensor import to_tensor

    paths = sorted({item.path for item in expand_inputs(sources, recursive=True)})[:limit]
    if not paths:
        raise UsageError(f"no images in {', '.join(sources)}")
    return [p.name for p in paths], [resize_long_side(to_tensor(read_image(p).rgb).contiguous(), size) for p in paths]


def style_setup(spec: ModelSpec) -> tuple[torch.Tensor, LossNetConfig, StyleLossConfig]:
    """The painting (at its training size), loss-net recipe and loss of a style, from its card.

    Raises:
        UsageError: the card names no painting, or it is not where the card says.
    """
    style = spec.card().get("style") or {}
    if not style.get("image"):
        raise UsageError(f"style '{spec.name}': its card {spec.card_path} names no painting")
    painting = read_style_image(style["image"], int(style.get("style_size", 512)))
    recipe = LossNetConfig.from_dict(style["loss_net"]) if style.get("loss_net") else LossNetConfig()
    loss = StyleLossConfig.from_dict(style["loss"]) if style.get("loss") else StyleLossConfig()
    return painting, recipe, loss


def evaluate_styles(names: list[str], sources: list[str], *, limit: int, size: int, steps: int, seed: Optional[int],
                    sheet: Optional[Path], device: str, record: bool, quiet: bool,
                    overwrite: bool = False) -> tuple[dict, list[str]]:
    """Measure each style on the photos. Returns (report, notes).

    Raises:
        UsageError: ``record`` would replace a card's figures over more photos
            or optimisation steps, without ``overwrite``.
    """
    from imgedit.devices import resolve_device
    from imgedit.models import record_metrics
    from imgedit.verbs import StageProgress

    if not names:
        names = [name for name, spec in styles().items() if spec.weights.is_file()]
        if not names:
            raise UsageError("no trained styles yet: train one with 'imgedit train style' or name one with --style")
    specs = [resolve_style(name) for name in names]
    photo_names, photos = load_photos(sources, limit, size)
    if record:  # before the minutes of measuring
        for spec in specs:
            check_record(spec, "eval_style", {"photos": photo_names, "steps": steps}, ("photos", "steps"), overwrite)
    seed = evaluate.EVAL_SEED if seed is None else seed
    dev = resolve_device(device)
    results: list[evaluate.StyleResult] = []
    columns: list[list[torch.Tensor]] = []
    notes: list[str] = []
    started = time.perf_counter()
    with StageProgress(len(specs) * len(photos) * max(steps, 1), "eval style", "step", quiet) as advance:
        for spec in specs:
            painting, recipe, loss = style_setup(spec)
            if recipe.kind == "random" and recipe.seed == seed:
                notes.append(f"warning: {spec.name} was trained with the measuring seed {seed}; pass another --seed")
            meter = evaluate.StyleMeter(painting, recipe, seed)
            objective = StyleObjective(build_loss_net(recipe, dev), painting.to(dev), loss) if steps else None
            net = load_style_net(spec, dev)
            outputs = []
            for name, photo in zip(photo_names, photos):
                fast = stylise(photo.to(dev), net).cpu()
                optimised = None
                if objective is not None:
                    with torch.enable_grad():
                        optimised = optimise_image(photo.to(dev), objective, steps, on_step=lambda *_: advance(1)).cpu()
                else:
                    advance(1)
                results.append(evaluate.StyleResult(
                    spec.name, name, meter(fast).item(), meter(optimised).item() if optimised is not None else None,
                    evaluate.structure_kept(photo, fast).item(),
                    evaluate.structure_kept(photo, optimised).item() if optimised is not None else None))
                outputs.append(fast)
            columns.append([painting] + outputs)
    summary = evaluate.summarise(results)
    report = {"styles": summary, "photos": photo_names, "size": size, "steps": steps, "measuring_seed": seed,
              "per_photo": [{**r.__dict__, "ratio": r.ratio} for r in results],
              "seconds": round(time.perf_counter() - started, 1)}
    if sheet is not None:
        write_sheet(sheet, photos, columns)
        notes.append(f"sheet: {sheet} (top row: the paintings; then per photo: the photo, then each style: "
                     f"{', '.join(s.name for s in specs)})")
    if record:
        for spec in specs:
            record_metrics(spec, "eval_style", {**summary[spec.name], "photos": photo_names, "size": size,
                                                "steps": steps, "measuring_seed": seed, "data": sources})
        notes.append("recorded in each style's model card")
    return report, notes


def write_sheet(path: Path, photos: list[torch.Tensor], columns: list[list[torch.Tensor]]) -> Path:
    """Photos down, styles across, the paintings on top; every cell 3:2."""
    from imgedit.tensor import grid, write_tensor

    w = max(max(max(p.shape[-2:]) for p in photos), 64)
    h = round(w * 2 / 3)
    blank = torch.ones(1, 3, h, w)
    cells = [blank] + [evaluate.fit_cell(c[0], h, w) for c in columns]
    for i, photo in enumerate(photos):
        cells += [evaluate.fit_cell(photo, h, w)] + [evaluate.fit_cell(c[1 + i], h, w) for c in columns]
    return write_tensor(grid(torch.cat(cells), columns=len(columns) + 1), path, overwrite=True)


def format_report(r: dict) -> str:
    lines = [f"{len(r['photos'])} photos at {r['size']} px; style distance measured by a random network of seed "
             f"{r['measuring_seed']}; optimisation baseline {r['steps']} steps",
             "  style                fast dist  optim dist  ratio  SSIM fast  SSIM optim"]
    fmt = lambda v, f: format(v, f) if v is not None else "-"  # noqa: E731
    for name, s in r["styles"].items():
        lines.append(f"  {name[:20]:20} {fmt(s['fast_distance'], '9.4f')}  {fmt(s['optimised_distance'], '10.4f')}  "
                     f"{fmt(s['ratio'], '5.2f')}  {fmt(s['fast_ssim'], '9.3f')}  {fmt(s['optimised_ssim'], '10.3f')}")
    lines.append(f"  ({r['seconds']:.0f} s)")
    return "\n".join(lines)
