"""Image sets for training and evaluating whole-image models (the GAN, the
interpolation VAE): whole images as squares of the model's size, and the
held-out split, shared so that every model holds out the same images.

Held-out images are chosen by a rule that depends only on file names, not on
their order or the folder they are in: the ``n`` files whose names have the
smallest SHA-256. Training records their names in the model card;
``imgedit eval gan --held-out`` (and ``eval interp``) evaluate on exactly those.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Sequence

import torch

from imgedit.errors import UsageError
from imgedit.imagepool import ImagePool

__all__ = [
    "HOLDOUT_RULE",
    "ImageSet",
    "UTKFACE_SUFFIX",
    "data_licence",
    "held_out_names",
    "held_out_of",
    "load_squares",
    "overlap_warning",
    "split_holdout",
]

HOLDOUT_RULE = "the N files whose names have the smallest sha256 (of the UTF-8 file name)"

# UTKFace's aligned crops are named AGE_GENDER_RACE_DATETIME.jpg.chip.jpg
UTKFACE_SUFFIX = ".jpg.chip.jpg"
UTKFACE_LICENCE = (
    "UTKFace (https://susanqq.github.io/UTKFace/): NON-COMMERCIAL RESEARCH USE ONLY. "
    "These weights were trained on UTKFace images and inherit that restriction; "
    "the copyright of the images belongs to their original owners."
)


@dataclass
class ImageSet:
    """Images as ``(N, 3, S, S)`` uint8 squares, with the file each came from."""

    names: list[str]
    images: torch.Tensor

    def __len__(self) -> int:
        return len(self.names)

    def batch(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``(n, 3, S, S)`` random images in [-1, 1], half of them mirrored left-right."""
        picks = torch.randint(len(self), (n,), generator=generator)
        flip = (torch.rand(n, generator=generator) < 0.5).view(n, 1, 1, 1)
        x = self.images[picks].float() / 127.5 - 1.0
        return torch.where(flip, x.flip(-1), x)

    def select(self, keep: Iterable[int]) -> "ImageSet":
        keep = list(keep)
        return ImageSet([self.names[i] for i in keep], self.images[keep])


def load_squares(sources: Sequence[str | Path], size: int, what: str = "training images") -> ImageSet:
    """Every readable image of ``sources`` (files, folders, globs; recursive)
    as a centred square of ``size`` px. Unreadable files are skipped with a
    warning; images smaller than 16 px are ignored. ``what`` names the images
    in the error (an eval loads "real images", not training ones).

    Raises:
        UsageError: no usable image.
    """
    pool = ImagePool(sources, min_side=16, what=what)
    return ImageSet([p.name for p in pool.paths], pool.squares(size))


def _name_hash(name: str) -> str:
    return hashlib.sha256(name.encode("utf-8")).hexdigest()


def held_out_names(names: Iterable[str], n: int) -> list[str]:
    """The ``n`` names :data:`HOLDOUT_RULE` picks, sorted."""
    return sorted(sorted(set(names), key=_name_hash)[:n])


def split_holdout(images: ImageSet, n: int) -> tuple[ImageSet, list[str]]:
    """(training images, held-out names).

    Raises:
        UsageError: fewer than ``n`` + 2 images.
    """
    if n <= 0:
        return images, []
    if n + 2 > len(images):
        raise UsageError(f"--holdout {n} leaves too few of the {len(images)} images to train on")
    held = set(held_out_names(images.names, n))
    return images.select(i for i, name in enumerate(images.names) if name not in held), sorted(held)


def held_out_of(images: ImageSet, card: dict) -> ImageSet:
    """The images a model card lists as held out from its training.

    Raises:
        UsageError: the card lists none.
    """
    held = set((card.get("training") or {}).get("holdout", {}).get("files") or [])
    if not held:
        raise UsageError("--held-out: the model card lists no held-out images (train with --holdout N)")
    # The split is by file name, and a data set may hold one picture under two names (UTKFace: 29 of 2000
    # faces64 held-out files are byte for byte training files): those were trained on, so they are not held out.
    trained = {_pixels_digest(images.images[i]) for i, name in enumerate(images.names) if name not in held}
    keep = [i for i, name in enumerate(images.names) if name in held and _pixels_digest(images.images[i]) not in trained]
    seen_twice = sum(name in held for name in images.names) - len(keep)
    if seen_twice:
        logging.getLogger("imgedit").warning(
            "--held-out: left out %d held-out image%s whose picture is also a training image's, under another name",
            seen_twice, "s" * (seen_twice != 1))
    return images.select(keep)


def _pixels_digest(image: torch.Tensor) -> bytes:
    return hashlib.sha256(image.contiguous().numpy().tobytes()).digest()


def overlap_warning(card: dict, sources: Iterable[str | Path], held_out: bool,
                    card_path: Optional[Path] = None) -> list[str]:
    """A warning where evaluation images lie in the model's training data
    (and are not its held-out part): a source (a file, a folder, a glob's
    matches) inside a folder the card lists under ``training.data``, or a
    folder holding one. The card's relative folders are read from the
    current folder and from the checkout ``card_path`` lies in
    (``weights/<plugin>/<model>.json``): a run from elsewhere, or a glob,
    is still caught."""
    if held_out:
        return []
    trained_on = _training_folders(card, card_path)
    evaluated = {path.resolve() for source in sources for path in _evaluated_paths(source)}
    hit = next((folder for folder in trained_on for path in evaluated
                if path.is_relative_to(folder) or folder.is_relative_to(path)), None)
    if hit is None:
        return []
    has_holdout = bool((card.get("training") or {}).get("holdout", {}).get("files"))
    remedy = "use --held-out or another folder" if has_holdout else "use images it was not trained on"
    return [f"Warning: the evaluation images are the model's training data ({hit}); the numbers flatter it ({remedy})."]


def _training_folders(card: dict, card_path: Optional[Path]) -> set[Path]:
    """The folders a card lists as its training data, as they are found here."""
    bases = [Path.cwd()]
    if card_path is not None and len(card_path.resolve().parents) > 2:
        bases.append(card_path.resolve().parents[2])  # the checkout, whose top the training was run from
    folders = set()
    for listed in (card.get("training") or {}).get("data") or []:
        path = Path(listed)
        for found in ([path] if path.is_absolute() else [base / path for base in bases]):
            if found.exists():
                folders.add(found.resolve())
    return folders


def _evaluated_paths(source: str | Path) -> list[Path]:
    """What a ``--data`` source names: itself, or for a glob the folder its
    matches lie under (not each of 20 000 matches resolved again)."""
    import glob

    from imgedit.inputs import glob_base

    text = str(source)
    return [glob_base(text)] if glob.has_magic(text) else [Path(source)]


def data_licence(names: Iterable[str]) -> str:
    """What the model card says about the training data's terms."""
    if any(name.endswith(UTKFACE_SUFFIX) for name in names):
        return UTKFACE_LICENCE
    return "the licences of the training images listed under training.data apply"
