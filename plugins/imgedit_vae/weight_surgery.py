"""Weights made from other weights, so that a run starts where a trained
model left off: a wider or deeper network from a narrower one
(:func:`grow_from`), the one-channel denoiser from the colour one
(:func:`gray_from_colour`). Both give the same output as the weights they
come from."""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn


# Paths added to the architecture after weights were shipped; each starts at zero.
NEW_PATHS = ("decoder.bridge.",)


def _block(name: str) -> Optional[str]:
    """The residual block a parameter belongs to (``"decoder.stages.3.2."``), if any."""
    parts = name.split(".")
    return ".".join(parts[:4]) + "." if len(parts) > 4 and parts[1] == "stages" else None


def grow_from(model: nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    """Load a smaller trained network's weights into ``model`` (same
    architecture, each width at least as large, as many residual blocks or
    more) so that it computes exactly the same output, then trains on from
    there.

    Each old tensor fills the leading block of the new one. The weights from a
    new input channel to an old output channel are zeroed, so old channels
    never read the new ones and the output is unchanged; every other new
    weight keeps its random start, so the new channels carry signal and their
    zeroed outgoing weights get gradients at once (Net2Net-style widening,
    Chen et al. 2016, with zeroed rather than copied units). A residual block
    the weights lack starts with its second convolution at zero: it adds
    nothing until training gives it something to add. Weights made before a
    path of ``NEW_PATHS`` existed may lack it: it starts at zero. Any other
    missing parameter (even one that starts at zero, like the head) is
    refused.

    Raises:
        ValueError: the tensors name other parameters, or one is larger than
            the model's along some dimension.
    """
    state = model.state_dict()
    unused = {name for name in set(state) - set(tensors) if name.startswith(NEW_PATHS) and not state[name].any()}
    known_blocks = {_block(name) for name in tensors}
    added = {name for name in state if _block(name) and _block(name) not in known_blocks}  # whole blocks the weights lack
    if set(state) - unused - added != set(tensors):
        odd = sorted((set(state) - unused - added) ^ set(tensors))
        if all(name in tensors and name.startswith(NEW_PATHS) for name in odd):  # only a new path too many
            paths = sorted({name.split(".")[1] for name in odd})
            raise ValueError(f"the weights have a {', '.join(paths)} this model lacks: train with it too")
        if all(name in tensors and _block(name) for name in odd):
            raise ValueError(f"the weights have residual blocks this model lacks ({_block(odd[0])[:-1]}): "
                             "give it as many blocks")
        raise ValueError(f"the weights are of another architecture ({len(odd)} names differ, e.g. {odd[0]})")
    modules = dict(model.named_modules())
    with torch.no_grad():
        for name, new in state.items():
            if name in added:
                if ".conv2." in name:
                    new.zero_()
                continue
            if name in unused:
                continue
            old = tensors[name].to(new.dtype)
            if old.ndim != new.ndim or any(o > n for o, n in zip(old.shape, new.shape)):
                raise ValueError(f"{name}: {tuple(old.shape)} does not fit in {tuple(new.shape)}")
            if new.ndim >= 2 and old.shape != new.shape:
                # ConvTranspose2d weights are (in, out, kh, kw); the others (out, in, ...)
                out_dim, in_dim = (1, 0) if isinstance(modules[name.rpartition(".")[0]], nn.ConvTranspose2d) else (0, 1)
                cut = [slice(None)] * new.ndim
                cut[out_dim], cut[in_dim] = slice(0, old.shape[out_dim]), slice(old.shape[in_dim], None)
                new[tuple(cut)] = 0
            new[tuple(slice(0, n) for n in old.shape)] = old
    model.load_state_dict(state)


def gray_from_colour(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Weights of a colour :class:`ConditionalVAE` -> those of a one-channel
    model that gives the same output on a grayscale image as the colour model
    gives on that image repeated on 3 channels (its output channels averaged).

    Pixel-unshuffle puts input channel ``c``'s four phases at ``4c..4c+3``:
    the gray stem sums the R, G and B phases' weights (the three inputs are
    equal) and keeps the condition's; the gray head averages the three
    colours' output phases.

    Raises:
        ValueError: the weights are not of a 3-channel model.
    """
    out = dict(tensors)
    stem, head_w, head_b = (tensors[n] for n in ("encoder.stem.weight", "decoder.head.weight", "decoder.head.bias"))
    if head_w.shape[0] != 12 or stem.shape[1] < 12:
        raise ValueError(f"not a colour model: its head gives {head_w.shape[0] // 4} channels")
    out["encoder.stem.weight"] = torch.cat([stem[:, 0:4] + stem[:, 4:8] + stem[:, 8:12], stem[:, 12:]], dim=1)
    out["decoder.head.weight"] = head_w.view(3, 4, *head_w.shape[1:]).mean(0)
    out["decoder.head.bias"] = head_b.view(3, 4).mean(0)
    return out
