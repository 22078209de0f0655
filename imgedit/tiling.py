"""The tiling engine: run an operation on an image tile by tile.

Every operation whose manifest says ``tileable`` gets this for free. An image
cut into tiles is held on the CPU; only one tile (its core plus context) is
moved to the device at a time, and the output is accumulated on the CPU in
float32. An image that fits in one tile runs whole where it is. Either way the
result goes to ``out_device`` (the next stage's device, or the CPU).

Geometry of one tile, along each axis::

    | guard (overlap) | blend | core (<= tile) | blend | guard (overlap) |
      weight 0          ramp    weight 1         ramp    weight 0

* ``overlap`` is ``capabilities.tile_overlap``: the context an output pixel
  needs (at least the operation's receptive radius).
* ``blend`` px on each side of the core are also computed and feathered into
  the neighbouring tile with a linear ramp, so operations that are not exactly
  local show no seams. Every pixel that gets a non-zero weight still has at
  least ``overlap`` px of real context beyond it, which is why a tiled run
  matches an untiled run for any operation whose receptive radius is
  ``<= overlap``.
* At the image border the context is a reflection of the image, ``overlap``
  px wide, in tiled *and* untiled runs alike. That keeps border pixels
  identical between the two (the amount of ``pad_multiple`` padding differs
  from tile to tile, so padding alone would not).

Out of memory on the device halves the tile and retries; below
:data:`MIN_TILE` the engine falls back to the CPU through the caller's
``fallback`` (which rebuilds the applier there), or raises
:class:`~imgedit.errors.DeviceError`.
"""

from __future__ import annotations

import logging
import math
import numbers
from dataclasses import dataclass
from typing import Callable, Optional, Union

import torch
import torch.nn.functional as F

from imgedit.errors import DeviceError, OutputContractError, ShapeError, UsageError
from imgedit.operations import Applier, Capabilities
from imgedit.tensor import copy_if_shared, value_range

__all__ = ["MIN_TILE", "Box", "Tile", "choose_tile", "plan_tiles", "run_tiled"]

logger = logging.getLogger("imgedit")

MIN_TILE = 128
"""Smallest tile (core, px) tried after out-of-memory before falling back."""

CPU_WHOLE_MAX_PIXELS = 16_000_000
"""On the CPU, images up to this many pixels run whole under ``tile="auto"``."""

CPU_TILE = 2048
"""Largest tile used on the CPU for images above :data:`CPU_WHOLE_MAX_PIXELS`."""

CPU_MEMORY_MB = 1024
"""Working memory ``tile="auto"`` plans for one call on the CPU (from the
operation's ``memory_mb_per_megapixel``): a 12-megapixel photo through a
learned model then stays well under 2 GB. ``IMGEDIT_CPU_MEMORY_MB`` overrides."""

GPU_MEMORY_FRACTION = 0.8
"""Share of the free device memory ``tile="auto"`` plans to use (headroom for
fragmentation and the allocator's own caches)."""

TileSpec = Union[int, str, None]


@dataclass(frozen=True)
class Box:
    """A rectangle in pixel coordinates; ``bottom`` and ``right`` exclusive."""

    top: int
    left: int
    bottom: int
    right: int

    @property
    def height(self) -> int:
        return self.bottom - self.top

    @property
    def width(self) -> int:
        return self.right - self.left

    @property
    def slices(self) -> tuple[slice, slice]:
        """``(rows, cols)`` to index the last two dimensions of a tensor."""
        return slice(self.top, self.bottom), slice(self.left, self.right)

    def grow(self, margin: int, height: int, width: int) -> "Box":
        """This box grown by ``margin`` on every side, clipped to the image."""
        return Box(
            max(0, self.top - margin),
            max(0, self.left - margin),
            min(height, self.bottom + margin),
            min(width, self.right + margin),
        )


@dataclass(frozen=True)
class Tile:
    """One tile of a plan.

    Attributes:
        core: the pixels this tile is responsible for; the cores of a plan
            partition the image.
        context: the core plus the context around it, clipped to the image:
            the pixels cut out of the image for this tile.
    """

    core: Box
    context: Box


def _axis_cores(length: int, tile: int, align: int = 1, offset: int = 0) -> list[tuple[int, int]]:
    # Balanced split: n cores of nearly equal size (all <= tile), instead of
    # full tiles and a thin last one that would waste a whole device call.
    n = -(-length // tile)
    edges = [round(i * length / n) for i in range(n + 1)]
    if align > 1:  # inner edges on the grid: a core may grow by less than align px
        inner = {e - (e - offset) % align for e in edges[1:-1]}
        edges = [0, *sorted(e for e in inner if 0 < e < length), length]
    return list(zip(edges[:-1], edges[1:]))


def plan_tiles(height: int, width: int, tile: Optional[int], overlap: int, align: int = 1, offset: int = 0) -> list[Tile]:
    """Split an image into a grid of tiles.

    Args:
        height: image height in px.
        width: image width in px.
        tile: largest core size in px; ``None`` or 0 gives one tile.
        overlap: context in px around each core, on every side.
        align, offset: inner core edges fall on ``offset`` modulo ``align``
            (see ``Capabilities.tile_align``).

    Returns:
        Tiles in row-major order. Their cores partition the image exactly; their
        contexts are the cores grown by ``overlap`` and clipped to the image.

    Raises:
        UsageError: a size is negative or the image is empty.
    """
    if height < 1 or width < 1:
        raise UsageError(f"tiling: image size must be at least 1x1, got {height}x{width}")
    if tile is not None and tile < 0 or overlap < 0:
        raise UsageError(f"tiling: tile and overlap must be >= 0, got tile={tile}, overlap={overlap}")
    rows = _axis_cores(height, tile or height, align, offset)
    cols = _axis_cores(width, tile or width, align, offset)
    tiles = []
    for top, bottom in rows:
        for left, right in cols:
            core = Box(top, left, bottom, right)
            tiles.append(Tile(core, core.grow(overlap, height, width)))
    return tiles


# ----------------------------------------------------------------------------
# Guards
# ----------------------------------------------------------------------------


def _check_image(image: torch.Tensor) -> None:
    if not isinstance(image, torch.Tensor):
        raise ShapeError("tiling image", "a torch.Tensor", type(image).__name__)
    if image.ndim != 4 or not image.is_floating_point():
        raise ShapeError("tiling image", "float (B, C, H, W)", f"{image.dtype} {tuple(image.shape)}")


def _check_mask(mask: Optional[torch.Tensor], image: torch.Tensor) -> None:
    if mask is None:
        return
    b, _, h, w = image.shape
    if not isinstance(mask, torch.Tensor) or tuple(mask.shape) != (b, 1, h, w):
        got = tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise ShapeError("tiling mask", f"(B, 1, H, W) = {(b, 1, h, w)}", got)


def _output_shape(applier: Applier, shape: torch.Size) -> torch.Size:
    """The shape ``applier`` gives for an input of ``shape``: the same,
    unless it changes the size and says so with ``output_shape``."""
    output_shape = getattr(applier, "output_shape", None)
    return shape if output_shape is None else torch.Size(output_shape(tuple(shape)))


def _check_output(out: object, expected: torch.Size, what: str = "") -> None:
    """An applier returns a float image of the expected shape with finite
    values: a NaN would be written as black, 0-255 integers as white.
    ``what`` says what ``expected`` is when it is not the image's own
    shape (a tile, or the image padded by the host), so the author is not
    shown a shape their image never had. (Values far outside [0, 1] are
    the pipeline's check: this engine runs any function.)"""
    if out is None or not isinstance(out, torch.Tensor):
        got = "None" if out is None else f"a {type(out).__name__}"
        raise OutputContractError(f"applier output: the applier returned {got}, not an image tensor"
                                  + (" (a missing 'return'?)" if out is None else ""))
    if out.shape != expected:
        shape = f"{tuple(expected)}, {what}" if what else f"{tuple(expected)}"
        raise OutputContractError(f"applier output: expected the input's shape {shape}, got {tuple(out.shape)}")
    if not out.is_floating_point():
        raise OutputContractError(f"applier output: expected a float tensor in [0, 1], got {out.dtype}")
    # the least and greatest values, where isfinite(out).all() made a full-size mask: +1 GB and 1.3 s at 48 MP.
    # A NaN makes both NaN, an infinity one of them infinite
    if out.numel() and not all(math.isfinite(v) for v in value_range(out)):
        raise OutputContractError("applier output: expected finite values, got NaN or infinity")


# ----------------------------------------------------------------------------
# Tile size
# ----------------------------------------------------------------------------


def _device_budget_mb(device: torch.device) -> Optional[float]:
    """Memory the engine may plan for on ``device``; None means the CPU rule.
    What torch's allocator holds cached but unused counts as free: the
    driver counts it as taken, and a batch's second image would otherwise
    get smaller tiles than its first (and other bytes) from the cache the
    first one left."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        return (free + max(cached, 0)) / 2**20 * GPU_MEMORY_FRACTION
    if device.type == "mps":
        try:
            free = torch.mps.recommended_max_memory() - torch.mps.current_allocated_memory()
        except (AttributeError, RuntimeError):
            return None  # old torch: no memory query; behave like the CPU
        return max(free, 0) / 2**20 * GPU_MEMORY_FRACTION
    return None


def _padded(n: int, multiple: int) -> int:
    return n + (-n) % multiple


def choose_tile(
    shape: tuple[int, ...], capabilities: Capabilities, device: torch.device, blend: Optional[int] = None
) -> Optional[int]:
    """Choose a tile size for ``tile="auto"``.

    Args:
        shape: the image shape ``(B, C, H, W)``.
        capabilities: the manifest (``tileable``, ``tile_overlap``,
            ``pad_multiple``, ``memory_mb_per_megapixel`` are read).
        device: where the operation runs.
        blend: feather width (default ``tile_overlap // 2``).

    Returns:
        The core size in px, or ``None`` to run the image whole.
    """
    if not capabilities.tileable:
        return None
    b, _, h, w = shape
    margin = capabilities.tile_overlap + _blend_width(capabilities, blend)
    budget = _device_budget_mb(torch.device(device))
    if budget is None:
        cpu_mb = cpu_memory_mb()
        whole = min(CPU_WHOLE_MAX_PIXELS, cpu_mb / max(capabilities.memory_mb_per_megapixel, 1e-6) * 1e6 / max(b, 1))
        if h * w <= whole:
            return None
        return max(MIN_TILE, min(CPU_TILE, int(math.sqrt(whole)) - 2 * margin - capabilities.pad_multiple))
    # Pixels one call may hold, counting the whole batch.
    allowed = budget / max(capabilities.memory_mb_per_megapixel, 1e-6) * 1e6 / max(b, 1)
    m = capabilities.pad_multiple
    if _padded(h + 2 * capabilities.tile_overlap, m) * _padded(w + 2 * capabilities.tile_overlap, m) <= allowed:
        return None
    side = int(math.sqrt(allowed)) - 2 * margin - m
    return max(MIN_TILE, side)


def cpu_memory_mb() -> float:
    """The CPU memory budget for one call: ``IMGEDIT_CPU_MEMORY_MB`` or the default."""
    from imgedit.process_tuning import cpu_memory_setting

    value = cpu_memory_setting()
    return CPU_MEMORY_MB if value is None else value


def _blend_width(capabilities: Capabilities, blend: Optional[int]) -> int:
    if blend is None:
        return capabilities.tile_overlap // 2
    if blend < 0:
        raise UsageError(f"tiling: blend must be >= 0, got {blend}")
    return blend


def _resolve_tile(
    tile: TileSpec, shape: tuple[int, ...], capabilities: Capabilities, device: torch.device, blend: int
) -> Optional[int]:
    if isinstance(tile, str):
        if tile.strip().lower() != "auto":
            raise UsageError(f"tile: expected a size in px, 0 or 'auto', got {tile!r}")
        return choose_tile(shape, capabilities, device, blend)
    if tile is not None and (isinstance(tile, bool) or not isinstance(tile, numbers.Integral) or tile < 0):
        raise UsageError(f"tile: expected a size in px, 0 or 'auto', got {tile!r}")
    if not capabilities.tileable or not tile:
        return None
    return int(tile)


def _smaller_tile(tile: Optional[int], shape: tuple[int, ...], capabilities: Capabilities) -> Optional[int]:
    """The next tile size to try after out-of-memory, or None to give up."""
    if not capabilities.tileable:
        return None
    current = tile or max(shape[-2:])
    if current <= MIN_TILE:
        return None
    return max(MIN_TILE, current // 2)


# ----------------------------------------------------------------------------
# One tile
# ----------------------------------------------------------------------------


def _pad(x: torch.Tensor, pads: tuple[int, int, int, int], reflect_h: bool, reflect_w: bool) -> torch.Tensor:
    """Pad ``(left, right, top, bottom)``; each axis reflects or replicates."""
    left, right, top, bottom = pads
    if left or right:
        x = F.pad(x, (left, right, 0, 0), mode="reflect" if reflect_w else "replicate")
    if top or bottom:
        x = F.pad(x, (0, 0, top, bottom), mode="reflect" if reflect_h else "replicate")
    return x


def _border_pads(tile: Tile, border: int, margin: int, height: int, width: int) -> tuple[int, int, int, int]:
    """Reflected context to add where the tile's context was clipped at the
    image border: what a crop of the image reflect-padded by ``border`` gives."""
    core = tile.core
    return (
        max(0, min(border, margin - core.left)),
        max(0, min(border, core.right + margin - width)),
        max(0, min(border, margin - core.top)),
        max(0, min(border, core.bottom + margin - height)),
    )


def _cut(
    x: torch.Tensor, tile: Tile, border_pads: tuple[int, int, int, int], reflect: tuple[bool, bool], multiple: int
) -> torch.Tensor:
    """Cut a tile's context out of ``x`` (B, C, H, W) and pad it for the op."""
    rows, cols = tile.context.slices
    piece = _pad(x[..., rows, cols], border_pads, *reflect)  # (B, C, h, w)
    h, w = piece.shape[-2:]
    extra_h, extra_w = (-h) % multiple, (-w) % multiple
    # Reflect needs the pad to be smaller than the side; tiny tiles replicate.
    return _pad(piece, (0, extra_w, 0, extra_h), extra_h < h, extra_w < w)


def _ramp(lo: int, hi: int, core_lo: int, core_hi: int, blend: int) -> torch.Tensor:
    """1-D weights on ``[lo, hi)``: 1 on the core, falling linearly to
    ``1 / (blend + 1)`` at ``blend`` px outside it (never 0 where computed)."""
    pos = torch.arange(lo, hi, dtype=torch.float32)
    dist = (core_lo - pos).clamp(min=0) + (pos - (core_hi - 1)).clamp(min=0)
    return 1.0 - dist / (blend + 1)


def _weights(tile: Tile, region: Box, blend: int) -> torch.Tensor:
    wy = _ramp(region.top, region.bottom, tile.core.top, tile.core.bottom, blend)
    wx = _ramp(region.left, region.right, tile.core.left, tile.core.right, blend)
    return (wy[:, None] * wx[None, :])[None, None]  # (1, 1, h, w)


def _to_device(x: Optional[torch.Tensor], device: torch.device, dtype: torch.dtype) -> Optional[torch.Tensor]:
    # The only place tensors go to the device (tests patch it to fake a GPU).
    return None if x is None else x.to(device=device, dtype=dtype)


# ----------------------------------------------------------------------------
# The run
# ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Setup:
    overlap: int  # context each weighted pixel is guaranteed
    blend: int  # feather width around each core
    border: int  # reflected context at the image border
    multiple: int  # pad_multiple
    align: int = 1  # tile_align


def _run_plan(
    applier: Applier,
    image: torch.Tensor,
    mask: Optional[torch.Tensor],
    tile: Optional[int],
    setup: _Setup,
    device: torch.device,
    dtype: torch.dtype,
    on_tile: Optional[Callable[[int, int], None]],
    out_device: torch.device,
) -> torch.Tensor:
    b, c, h, w = image.shape
    margin = setup.overlap + setup.blend
    # A tile's crop starts margin px before its core, the untiled run's border px
    # before the image: cores at (margin - border) mod align put both on one grid.
    plan = plan_tiles(h, w, tile, margin, setup.align, (margin - setup.border) % setup.align)
    if len(plan) == 1:  # whole image: no weights, and the result may stay on the device
        out = _run_whole(applier, image, mask, plan[0], setup, device, dtype, out_device)
        if on_tile is not None:
            on_tile(1, 1)
        return out
    image = image.cpu()  # only the current tile goes to the device
    mask = None if mask is None else mask.cpu()
    out = torch.zeros((b, c, h, w), dtype=torch.float32)  # (B, C, H, W) on the CPU
    total = torch.zeros((1, 1, h, w), dtype=torch.float32)  # (1, 1, H, W)
    reflect = (h > setup.border, w > setup.border)
    for done, t in enumerate(plan, start=1):
        pads = _border_pads(t, setup.border, margin, h, w)
        # Tiles overlap: an applier that edits its input in place must get
        # a tile of its own, or it would change its neighbours' context.
        x = _own(_to_device(_cut(image, t, pads, reflect, setup.multiple), device, dtype), image)  # (B, C, h', w')
        m = None if mask is None else _cut(mask, t, pads, reflect, setup.multiple)  # (B, 1, h', w')
        m = _own(_to_device(m, device, dtype), mask)
        y = applier(x, m)
        _check_output(y, x.shape, f"a tile of the {tuple(image.shape)} image")
        region = t.core.grow(setup.blend, h, w)  # the pixels this tile contributes
        top, left = pads[2] + region.top - t.context.top, pads[0] + region.left - t.context.left
        y = y[..., top : top + region.height, left : left + region.width].to("cpu", torch.float32)
        weight = _weights(t, region, setup.blend)
        rows, cols = region.slices
        out[..., rows, cols] += y * weight
        total[..., rows, cols] += weight
        del y  # drop the device output before the next tile is computed
        if on_tile is not None:
            on_tile(done, len(plan))
    return (out / total).to(out_device)  # every pixel lies in exactly one core: total >= 1


def _run_whole(
    applier: Applier,
    image: torch.Tensor,
    mask: Optional[torch.Tensor],
    t: Tile,
    setup: _Setup,
    device: torch.device,
    dtype: torch.dtype,
    out_device: torch.device,
) -> torch.Tensor:
    h, w = image.shape[-2:]
    pads = _border_pads(t, setup.border, setup.overlap + setup.blend, h, w)
    if not any(pads) and h % setup.multiple == 0 and w % setup.multiple == 0:
        return _run_as_is(applier, image, mask, device, dtype, out_device)
    reflect = (h > setup.border, w > setup.border)
    x = _cut(image, t, pads, reflect, setup.multiple)  # (B, C, h', w') wherever image is: padded, so a copy
    m = None if mask is None else _cut(mask, t, pads, reflect, setup.multiple)
    y = applier(_to_device(x, device, dtype), _to_device(m, device, dtype))
    padded = f"the {tuple(image.shape)} image padded by the host"
    if hasattr(applier, "output_shape") and not any(pads):
        _check_output(y, _output_shape(applier, x.shape), padded)
        return y.to(out_device, torch.float32)
    _check_output(y, x.shape, padded)
    y = y[..., pads[2] : pads[2] + h, pads[0] : pads[0] + w]
    return y.to(out_device, torch.float32)


def _own(x: Optional[torch.Tensor], source: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    """A tile cut from ``source`` that the applier may edit in place."""
    return None if x is None else copy_if_shared(x, source)


def _moved(x: Optional[torch.Tensor], device: torch.device, dtype: torch.dtype) -> Optional[torch.Tensor]:
    """``x`` on ``device`` as ``dtype``, without a call when it is there already."""
    return x if x is None or (x.device == device and x.dtype == dtype) else _to_device(x, device, dtype)


def _run_as_is(
    applier: Applier,
    image: torch.Tensor,
    mask: Optional[torch.Tensor],
    device: torch.device,
    dtype: torch.dtype,
    out_device: torch.device,
) -> torch.Tensor:
    """The whole image needs no padding: no cutting, and no conversion
    that would be a no-op. Every torch call gives up the GIL and must win
    it back, which the I/O threads of a batch make slow: for a cheap
    operation these calls, not the arithmetic, were the compute thread's
    cost."""
    y = applier(_moved(image, device, dtype), _moved(mask, device, dtype))
    _check_output(y, _output_shape(applier, image.shape))
    return y if y.device == out_device and y.dtype == torch.float32 else y.to(out_device, torch.float32)


def _is_oom(err: BaseException) -> bool:
    # CUDA raises OutOfMemoryError; MPS and older CUDA builds raise a plain
    # RuntimeError whose message says "out of memory"; the CPU allocator's
    # says "can't allocate memory" (a style at a huge --scale, say); MPS
    # refuses one buffer over Metal's largest with "Invalid buffer size: 12.00 GB".
    message = str(err).lower() if isinstance(err, RuntimeError) else ""
    return isinstance(err, torch.cuda.OutOfMemoryError) or any(
        words in message for words in ("out of memory", "can't allocate memory", "invalid buffer size"))


def _free_cache(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif device.type == "mps":
        torch.mps.empty_cache()


def _oom_error(device: torch.device, tile: Optional[int], capabilities: Capabilities) -> DeviceError:
    where = f"with {tile} px tiles" if tile else "with the whole image"
    if not capabilities.tileable:
        where = "(this operation cannot be tiled)"
    elif tile and tile <= MIN_TILE:
        where = f"even with {tile} px tiles"
    hint = "; try --device cpu" if device.type != "cpu" else "; try a smaller image"
    return DeviceError(f"out of memory on {device} {where}{hint}")


def run_tiled(
    applier: Applier,
    image: torch.Tensor,
    mask: Optional[torch.Tensor] = None,
    *,
    capabilities: Capabilities,
    device: Union[torch.device, str],
    dtype: torch.dtype = torch.float32,
    tile: TileSpec = "auto",
    on_tile: Optional[Callable[[int, int], None]] = None,
    fallback: Optional[Callable[[], Applier]] = None,
    blend: Optional[int] = None,
    out_device: Union[torch.device, str] = "cpu",
) -> torch.Tensor:
    """Run ``applier`` over ``image`` tile by tile.

    Args:
        applier: ``applier(image, mask) -> image`` on ``device``/``dtype``;
            must return the shape it was given.
        image: ``(B, C, H, W)`` float image, on the CPU or already on ``device``
            (a previous stage may leave it there).
        mask: ``(B, 1, H, W)`` float mask (1 = hole) or None; it is cut and
            padded exactly like the image.
        capabilities: the operation's manifest.
        device: where the applier runs; only one tile at a time is moved there.
        dtype: dtype the applier receives.
        tile: core size in px; ``None``/0 runs the image whole; ``"auto"``
            chooses from the device's free memory. Ignored (whole image) when
            the operation is not tileable.
        on_tile: progress callback ``on_tile(done, total)`` after each tile.
        fallback: ``fallback() -> applier`` rebuilding the applier on the CPU
            (fp32); used when the device runs out of memory even at
            :data:`MIN_TILE`.
        blend: feather width in px beyond each core (default
            ``tile_overlap // 2``); tiles carry ``tile_overlap + blend`` px of
            context per side.
        out_device: where the result goes: the CPU, or the next stage's
            device so intermediate images stay there between stages.

    Returns:
        ``(B, C, H, W)`` float32 result on ``out_device``.

    Raises:
        ShapeError: ``image``, ``mask`` or the applier's output has the wrong shape.
        UsageError: ``tile`` or ``blend`` is invalid.
        DeviceError: out of memory and no way left to shrink or fall back.
    """
    _check_image(image)
    _check_mask(mask, image)
    device = torch.device(device)
    setup = _Setup(
        overlap=capabilities.tile_overlap if capabilities.tileable else 0,
        blend=_blend_width(capabilities, blend) if capabilities.tileable else 0,
        border=capabilities.tile_overlap if capabilities.tileable else 0,
        multiple=max(1, capabilities.pad_multiple),
        align=max(1, capabilities.tile_align),
    )
    size = _resolve_tile(tile, tuple(image.shape), capabilities, device, setup.blend)
    while True:
        try:
            return _run_plan(applier, image, mask, size, setup, device, dtype, on_tile, torch.device(out_device))
        except RuntimeError as err:
            if not _is_oom(err):
                raise
        # Recover outside the except block: the traceback holds the frames
        # that hold the device tensors, and the cache can only be freed once
        # it is gone.
        _free_cache(device)
        smaller = _smaller_tile(size, tuple(image.shape), capabilities)
        if smaller is not None:
            logger.warning("out of memory on %s; retrying with %d px tiles", device, smaller)
            size = smaller
            continue
        if fallback is None or device.type == "cpu":
            raise _oom_error(device, size, capabilities)
        logger.warning("out of memory on %s even at the smallest tile; falling back to the CPU", device)
        applier, device, dtype = fallback(), torch.device("cpu"), torch.float32
        size = _resolve_tile(tile, tuple(image.shape), capabilities, device, setup.blend)
