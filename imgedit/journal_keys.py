"""What makes a run's result the same result: the recipe (every setting
that determines an output's bytes) and each input's journal key, its
content with its mask files' content, so a rerun skips exactly what is done.
"""

from __future__ import annotations

import os
import stat
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from imgedit.inputs import InputFile
from imgedit.journal import Journal, file_digest, make_key

if TYPE_CHECKING:  # pragma: no cover
    from imgedit.pipeline import Pipeline
    from imgedit.runner import RunOptions


def recipe(pipeline: Pipeline, options: RunOptions) -> str:
    """Everything besides the input that the command sets and that
    determines an output's bytes: the stages and their parameters, the
    hashes of the models and files they use, the output format, a precision
    or tile size given; and, where the inputs are kept (not
    ``--in-place``), the plugin and version that provide each stage, so an
    upgraded plugin, or another plugin now providing the operation, redoes
    the results. In place the photo already holds the earlier version's
    edit: an upgrade must not edit it a second time.

    What the machine decides is left out, so a run resumed on another one
    skips what is done: the device, ``--precision auto`` (reduced on a GPU)
    and the automatic tile size (from the memory free), each of which moves
    values by about a level."""
    return recipes(pipeline, options)[0]


def recipes(pipeline: Pipeline, options: RunOptions) -> tuple[str, str]:
    """:func:`recipe`, and the recipe as versions before 2026-12-08 wrote it,
    where no ``--quality`` read as ``--quality 95`` (see :class:`JournalKeys`)."""
    from imgedit.models import ModelSpec
    from imgedit.plugins import plugin_info
    from imgedit.registry import get_registry

    models = get_registry().models
    weights = []
    for stage in pipeline.stages:
        for name in stage.operation.weights:
            spec: Optional[ModelSpec] = models.get(name)
            weights.append(f"{name}={spec.card().get('sha256') if spec else 'missing'}")
        if stage.operation.depends_on is not None:
            for path in stage.operation.depends_on(stage.params):
                weights.append(f"{path}={file_digest(path) if Path(path).is_file() else 'missing'}")
    parts = [repr(pipeline.describe()), ",".join(weights)]
    if (options.precision or "auto") not in ("auto", "fp32"):  # reduced precision changes the bytes a little
        parts.append(f"precision={options.precision}")
    if options.tile != "auto":  # a chosen tile (or none) moves values at the seams by a level: as precision, above
        parts.append(f"tile={options.tile or 0}")
    if pipeline.needs_mask:
        parts.append(repr(options.masks))  # the mask files' content is in each image's key: see JournalKeys
    if not options.in_place:
        providers = {stage.operation.plugin for stage in pipeline.stages if stage.operation.plugin}
        parts.append("plugins=" + ",".join(f"{name}@{plugin_info(name).version}" for name in sorted(providers)))
    quality = f"quality={'source' if options.quality is None else options.quality}"  # source: a JPEG's own
    legacy = f"q={95 if options.quality is None else options.quality}"
    return tuple("\n".join([*parts[:2], f"fmt={options.format} {one}", *parts[2:]]) for one in (quality, legacy))


class JournalKeys:
    """The journal keys of a run's inputs: each input's content, with its
    mask files' content where the pipeline takes a mask, and the recipe. A
    key without mask files is the key journals always had.

    A run records the key of its recipe; it takes as done a result recorded
    under that key or under the key an earlier version gave the recipe
    (:meth:`matching`). Earlier versions keyed no ``--quality`` as
    ``--quality 95``: their results stay done for a rerun with either (they
    cannot be told apart), while results recorded now with one are not
    taken for the other's."""

    def __init__(self, pipeline: Pipeline, options: RunOptions):
        self._recipes = recipes(pipeline, options)
        self.masks = _MaskFiles(options.masks.mask) if pipeline.needs_mask else None

    def of(self, item: InputFile, digest: str) -> str:
        """The key of ``item`` read as content of ``digest`` (:func:`file_digest`): the one a run records."""
        return self.matching(item, digest)[0]

    def matching(self, item: InputFile, digest: str) -> list[str]:
        """The keys under which a journal holds this recipe's result for
        ``item`` read as ``digest``: :meth:`of`'s first, then the earlier version's."""
        masks = self.masks.digests(item) if self.masks is not None else []
        content = " ".join([digest, *masks])
        return [make_key(content, one) for one in self._recipes]


def holds_done(journal: Journal, dst: Path, keys: list[str], in_place: bool) -> bool:
    """``dst`` holds a result of one of ``keys`` (:meth:`JournalKeys.matching`):
    recorded as done, or (``in_place``) the file is the result a run recorded."""
    return any(journal.is_done(dst, key) or in_place and journal.holds_result(dst, key) for key in keys)


class _MaskFiles:
    """The mask files that may give an image its hole: ``--mask FILE``, the
    files a ``--mask DIR`` pairs with it, else its sidecars. Their content
    goes into the image's journal key, so that a redrawn mask makes its
    image be redone (the recipe has only ``--mask``'s path).

    They are found as :func:`imgedit.masks.find_mask` pairs them, but every
    candidate, not only the one it takes (a sidecar even where transparency
    wins): a change to any of them redoes the image, never the other way
    round. One listing per folder, kept for the run: a folder of 10,000
    photos is not listed 10,000 times."""

    def __init__(self, mask: Optional[Path]):
        self.mask = None if mask is None else Path(mask)
        self.mask_is_folder = self.mask is not None and self.mask.is_dir()
        self._listings: dict[Path, dict[str, list[str]]] = {}  # lower-case name: the names so spelt
        self._digests: dict[tuple, str] = {}

    def digests(self, item: InputFile) -> list[str]:
        """The content digests of ``item``'s candidate mask files, in a fixed order."""
        return [digest for path in self._candidates(item) if (digest := self._digest(path))]

    def _candidates(self, item: InputFile) -> list[Path]:
        from imgedit.masks import IMAGE_SUFFIXES, mask_search

        if self.mask is not None and not self.mask_is_folder:
            return [self.mask]
        found = []
        for folder, bases in mask_search(item.path, item.relative, self.mask):
            listing = self._listing(folder)
            for base in bases:
                for suffix in IMAGE_SUFFIXES:  # the suffix in any case, the stem exact
                    names = listing.get((base + suffix).lower(), ())
                    found += [folder / name for name in names if name.startswith(base)]
        return found

    def _listing(self, folder: Path) -> dict[str, list[str]]:
        from imgedit.masks import is_sidecar_name

        listing = self._listings.get(folder)
        if listing is None:
            listing = {}
            with suppress(OSError):  # no such folder: no mask there
                with os.scandir(folder) as entries:
                    for entry in entries:
                        # beside the photos, only sidecars: not a dict of 100,000 photos' names
                        if (self.mask_is_folder or is_sidecar_name(entry.name)) and entry.is_file():
                            listing.setdefault(entry.name.lower(), []).append(entry.name)
            self._listings[folder] = listing
        return listing

    def _digest(self, path: Path) -> Optional[str]:
        """The file's digest, hashed once per version of it (one ``--mask``
        file for every image is read once); None if it is gone."""
        try:
            st = os.stat(path)
            if not stat.S_ISREG(st.st_mode):  # a device or FIFO: never read to its end (the mask check says why)
                return None
            version = (str(path), st.st_size, st.st_mtime_ns, st.st_ino)
            if version not in self._digests:
                self._digests[version] = file_digest(path)
            return self._digests[version]
        except OSError:
            return None
