"""Tests for imgedit.tiling: tile plans, exactness, seams, memory and OOM.

No GPU here: a fake CUDA device is simulated by patching ``tiling._to_device``
(the single place tensors are moved) to keep tensors on the CPU while
recording what would have been moved.
"""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn

from imgedit import tiling
from imgedit.errors import DeviceError, ShapeError, UsageError
from imgedit.operations import Capabilities
from imgedit.tiling import MIN_TILE, Box, choose_tile, plan_tiles, run_tiled

CPU = torch.device("cpu")
CUDA = torch.device("cuda", 0)


def caps(**kw) -> Capabilities:
    base = dict(tileable=True, tile_overlap=4, pad_multiple=8)
    base.update(kw)
    return Capabilities(**base)


def identity(image, mask):
    return image


def padded(n: int, multiple: int) -> int:
    return n + (-n) % multiple


@pytest.fixture
def moved(monkeypatch):
    """Pretend to be a GPU: record every tensor shape sent to the device."""
    shapes: list[tuple[int, ...]] = []

    def fake_to_device(x, device, dtype):
        if x is None:
            return None
        shapes.append(tuple(x.shape))
        return x.to(dtype=dtype)

    monkeypatch.setattr(tiling, "_to_device", fake_to_device)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    return shapes


class ConvStack(nn.Module):
    """Three random 3x3 convs (receptive radius 3) that insist on pad_multiple."""

    def __init__(self, multiple: int = 8):
        super().__init__()
        torch.manual_seed(0)
        self.multiple = multiple
        self.net = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.Tanh(),
            nn.Conv2d(8, 8, 3, padding=1),
            nn.Tanh(),
            nn.Conv2d(8, 3, 3, padding=1),
        )

    @torch.no_grad()
    def forward(self, image, mask):
        h, w = image.shape[-2:]
        assert h % self.multiple == 0 and w % self.multiple == 0, (h, w)
        return self.net(image)


# ----------------------------------------------------------------------------
# plan_tiles
# ----------------------------------------------------------------------------


class TestPlanTiles:
    @pytest.mark.parametrize(
        "h, w, tile, overlap", [(37, 53, 16, 4), (100, 100, 100, 8), (64, 17, 13, 0), (5, 7, 2, 3), (300, 200, 128, 32)]
    )
    def test_cores_partition_and_contexts_in_bounds(self, h, w, tile, overlap):
        tiles = plan_tiles(h, w, tile, overlap)
        cover = torch.zeros(h, w, dtype=torch.int64)
        for t in tiles:
            core, ctx = t.core, t.context
            assert 1 <= core.height <= tile and 1 <= core.width <= tile
            assert 0 <= ctx.top <= core.top and core.bottom <= ctx.bottom <= h
            assert 0 <= ctx.left <= core.left and core.right <= ctx.right <= w
            assert ctx == Box(
                max(0, core.top - overlap),
                max(0, core.left - overlap),
                min(h, core.bottom + overlap),
                min(w, core.right + overlap),
            )
            cover[core.slices] += 1
        assert torch.all(cover == 1)

    @pytest.mark.parametrize("tile", [None, 0])
    def test_no_tiling_is_one_tile(self, tile):
        assert plan_tiles(30, 40, tile, 5) == [tiling.Tile(Box(0, 0, 30, 40), Box(0, 0, 30, 40))]

    def test_balanced_split(self):
        # 100 px in tiles of <= 48 -> 3 cores of ~33 px, not 48 + 48 + 4.
        widths = [t.core.width for t in plan_tiles(10, 100, 48, 0)]
        assert widths == [33, 34, 33]

    @pytest.mark.parametrize("args", [(0, 5, 4, 0), (5, 5, -1, 0), (5, 5, 4, -1)])
    def test_invalid(self, args):
        with pytest.raises(UsageError):
            plan_tiles(*args)


# ----------------------------------------------------------------------------
# Exactness and seams
# ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def image():
    return torch.rand(2, 3, 37, 53, generator=torch.Generator().manual_seed(1))


class TestTiledMatchesUntiled:
    @pytest.mark.parametrize("tile", [8, 13, 16, 20, 25, 36, 53, 64])
    @pytest.mark.parametrize("blend", [None, 0, 4])
    def test_conv_stack_radius_within_overlap(self, image, tile, blend):
        op, c = ConvStack(), caps(tile_overlap=4, pad_multiple=8)
        whole = run_tiled(op, image, capabilities=c, device=CPU, tile=None)
        calls = []
        progress = lambda done, total: calls.append(total)  # noqa: E731
        tiled = run_tiled(op, image, capabilities=c, device=CPU, tile=tile, blend=blend, on_tile=progress)
        assert tiled.shape == image.shape and tiled.dtype == torch.float32
        assert (tiled - whole).abs().max().item() < 1e-5
        assert calls[0] == len(plan_tiles(37, 53, tile, 4)) and (tile < 53 or calls[0] == 1)

    def test_radius_equal_to_overlap(self, image):
        # Overlap 3 == receptive radius 3: still exact, the tightest case.
        op, c = ConvStack(), caps(tile_overlap=3, pad_multiple=8)
        whole = run_tiled(op, image, capabilities=c, device=CPU, tile=0)
        tiled = run_tiled(op, image, capabilities=c, device=CPU, tile=10)
        assert (tiled - whole).abs().max().item() < 1e-5

    def test_too_little_overlap_is_detected(self, image):
        # Guards the test itself: with less context than the receptive radius
        # (and no blend band to lend it some) tiles must differ.
        op, c = ConvStack(), caps(tile_overlap=1, pad_multiple=8)
        whole = run_tiled(op, image, capabilities=c, device=CPU, tile=None)
        tiled = run_tiled(op, image, capabilities=c, device=CPU, tile=16, blend=0)
        assert (tiled - whole).abs().max().item() > 1e-3


class TestSeams:
    def per_tile_constant(self, ncols: int):
        """Adds r + c to tile (r, c): neighbouring tiles differ by exactly 1."""
        calls = []

        def op(image, mask):
            r, c = divmod(len(calls), ncols)
            calls.append((r, c))
            return image + float(r + c)

        return op

    @pytest.mark.parametrize("blend, tile", [(2, 16), (4, 16), (6, 32), (8, 32)])
    def test_blending_is_smooth(self, blend, tile):
        image = torch.zeros(1, 3, 64, 64)
        c = caps(tile_overlap=8, pad_multiple=1)
        out = run_tiled(self.per_tile_constant(64 // tile), image, capabilities=c, device=CPU, tile=tile, blend=blend)
        jump = max(out.diff(dim=-1).abs().max().item(), out.diff(dim=-2).abs().max().item())
        # A hard cut would jump by 1; the two ramps spread it over 2 * blend px,
        # and the largest step (entering the band) is 1 / (blend + 2).
        assert jump <= 1.0 / (blend + 2) + 1e-5
        # Away from the bands each tile keeps its own constant.
        assert out[0, 0, 8, 8].item() == pytest.approx(0.0)
        last = 2 * (64 // tile - 1)
        assert out[0, 0, 63, 63].item() == pytest.approx(float(last))

    def test_without_blend_there_is_a_seam(self):
        image = torch.zeros(1, 3, 64, 64)
        c = caps(tile_overlap=8, pad_multiple=1)
        out = run_tiled(self.per_tile_constant(4), image, capabilities=c, device=CPU, tile=16, blend=0)
        assert out.diff(dim=-1).abs().max().item() == pytest.approx(1.0)


# ----------------------------------------------------------------------------
# Padding, memory, shapes
# ----------------------------------------------------------------------------


class TestPadCrop:
    @pytest.mark.parametrize("shape", [(1, 3, 37, 53), (2, 3, 1, 1), (1, 3, 3, 50), (1, 1, 9, 9)])
    @pytest.mark.parametrize("tile", [None, 16])
    def test_identity_restores_image(self, shape, tile):
        image = torch.rand(shape)
        seen = []

        def op(x, mask):
            seen.append(x.shape)
            assert x.shape[-2] % 8 == 0 and x.shape[-1] % 8 == 0
            return x

        out = run_tiled(op, image, capabilities=caps(tile_overlap=4, pad_multiple=8), device=CPU, tile=tile)
        assert out.shape == image.shape
        assert (out - image).abs().max().item() < 1e-6
        assert seen

    def test_untiled_pads_only_to_multiple_when_not_tileable(self):
        seen = []
        c = Capabilities(tileable=False, pad_multiple=8)
        run_tiled(lambda x, m: seen.append(x.shape) or x, torch.rand(1, 3, 37, 53), capabilities=c, device=CPU, tile=16)
        assert seen == [torch.Size([1, 3, 40, 56])]


class TestOnlyTileOnDevice:
    def test_device_never_sees_more_than_one_tile(self, moved):
        image = torch.rand(1, 3, 300, 200)
        c = caps(tile_overlap=4, pad_multiple=8)
        tile, blend = 64, 2
        out = run_tiled(ConvStack(), image, capabilities=c, device=CUDA, tile=tile, blend=blend)
        assert out.device.type == "cpu" and out.dtype == torch.float32
        limit = padded(tile + 2 * (c.tile_overlap + blend), c.pad_multiple)
        assert len(moved) == len(plan_tiles(300, 200, tile, 6))
        assert all(h <= limit and w <= limit for _, _, h, w in moved), (limit, moved)

    def test_applier_gets_dtype_and_mask(self, moved):
        image, mask = torch.rand(1, 3, 40, 40), (torch.rand(1, 1, 40, 40) > 0.5).float()
        got = []

        def op(x, m):
            got.append((x.dtype, m.dtype, m.shape[1]))
            return x

        out = run_tiled(op, image, mask, capabilities=caps(), device=CUDA, dtype=torch.float16, tile=16)
        assert set(got) == {(torch.float16, torch.float16, 1)}
        assert out.dtype == torch.float32 and (out - image).abs().max() < 1e-3
        assert len(moved) == 2 * len(got)  # image and mask, tile by tile

    def test_non_tileable_runs_whole(self, moved):
        c = Capabilities(tileable=False, tile_overlap=4, pad_multiple=8)
        run_tiled(identity, torch.rand(1, 3, 300, 200), capabilities=c, device=CUDA, tile=32)
        assert moved == [(1, 3, 304, 200)]


class TestMask:
    @pytest.mark.parametrize("tile", [None, 12, 20])
    def test_mask_cut_and_padded_like_image(self, tile):
        # Channel 0 of the image *is* the mask, so every tile must see them equal,
        # padding included.
        mask = (torch.rand(2, 1, 45, 31, generator=torch.Generator().manual_seed(3)) > 0.7).float()
        image = torch.cat([mask, torch.rand(2, 2, 45, 31)], dim=1)
        calls = []

        def op(x, m):
            assert m is not None and m.shape == (x.shape[0], 1, *x.shape[-2:])
            assert torch.equal(x[:, :1], m)
            calls.append(1)
            return torch.cat([m, x[:, 1:]], dim=1)

        out = run_tiled(op, image, mask, capabilities=caps(tile_overlap=4, pad_multiple=8), device=CPU, tile=tile)
        assert torch.allclose(out, image, atol=1e-6)
        assert len(calls) == len(plan_tiles(45, 31, tile, 6))

    def test_no_mask_passes_none(self):
        got = []
        run_tiled(lambda x, m: got.append(m) or x, torch.rand(1, 3, 20, 20), capabilities=caps(), device=CPU, tile=8)
        assert got and all(m is None for m in got)


class TestGuards:
    def test_wrong_output_shape(self):
        with pytest.raises(ShapeError, match="applier output"):
            run_tiled(lambda x, m: x[:, :1], torch.rand(1, 3, 16, 16), capabilities=caps(), device=CPU, tile=None)

    @pytest.mark.parametrize("image", [torch.rand(3, 16, 16), torch.zeros(1, 3, 8, 8, dtype=torch.uint8), "img"])
    def test_bad_image(self, image):
        with pytest.raises(ShapeError, match="expected"):
            run_tiled(identity, image, capabilities=caps(), device=CPU)

    def test_bad_mask(self):
        with pytest.raises(ShapeError, match="mask"):
            run_tiled(identity, torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16), capabilities=caps(), device=CPU)

    @pytest.mark.parametrize("tile", [-1, "big", 1.5, True])
    def test_bad_tile(self, tile):
        with pytest.raises(UsageError, match="tile"):
            run_tiled(identity, torch.rand(1, 3, 16, 16), capabilities=caps(), device=CPU, tile=tile)

    def test_other_errors_propagate(self):
        def broken(x, m):
            raise RuntimeError("size mismatch in layer 3")

        with pytest.raises(RuntimeError, match="size mismatch"):
            run_tiled(broken, torch.rand(1, 3, 16, 16), capabilities=caps(), device=CPU)

    def test_progress(self):
        calls = []
        image = torch.rand(1, 3, 30, 30)
        run_tiled(identity, image, capabilities=caps(), device=CPU, tile=10, on_tile=lambda *a: calls.append(a))
        assert calls == [(i, 9) for i in range(1, 10)]


# ----------------------------------------------------------------------------
# tile="auto"
# ----------------------------------------------------------------------------


class TestAutoTile:
    def test_cpu_small_image_runs_whole(self):
        assert choose_tile((1, 3, 3000, 4000), caps(memory_mb_per_megapixel=50), CPU) is None

    def test_cpu_tiles_a_memory_hungry_op_to_the_budget(self, monkeypatch):
        monkeypatch.delenv("IMGEDIT_CPU_MEMORY_MB", raising=False)
        hungry = caps(memory_mb_per_megapixel=400)  # 12 MP whole would need 4.8 GB
        side = choose_tile((1, 3, 3000, 4000), hungry, CPU)
        assert side is not None
        assert (side + 2 * 6 + 8) ** 2 / 1e6 * 400 <= tiling.CPU_MEMORY_MB
        monkeypatch.setenv("IMGEDIT_CPU_MEMORY_MB", "8000")
        assert choose_tile((1, 3, 3000, 4000), hungry, CPU) is None

    @pytest.mark.parametrize("value", ["lots", "1GB", "1,5", "nan", "inf", "0", "-5"])
    def test_a_budget_that_is_not_megabytes_is_a_usage_error(self, monkeypatch, value):
        monkeypatch.setenv("IMGEDIT_CPU_MEMORY_MB", value)
        message = f"IMGEDIT_CPU_MEMORY_MB={value!r} is not a number of megabytes above 0"
        with pytest.raises(UsageError) as error:
            tiling.cpu_memory_mb()
        assert str(error.value) == message and error.value.exit_code == 2
        with pytest.raises(UsageError, match="IMGEDIT_CPU_MEMORY_MB="):  # what tile="auto" reads on the CPU
            choose_tile((1, 3, 64, 64), caps(), CPU)

    def test_the_budget_is_read_in_megabytes(self, monkeypatch):
        monkeypatch.setenv("IMGEDIT_CPU_MEMORY_MB", " 2048.5 ")
        assert tiling.cpu_memory_mb() == 2048.5
        monkeypatch.setenv("IMGEDIT_CPU_MEMORY_MB", "")
        assert tiling.cpu_memory_mb() == tiling.CPU_MEMORY_MB

    def test_cpu_huge_image_tiles(self):
        assert choose_tile((1, 3, 5000, 5000), caps(), CPU) == tiling.CPU_TILE

    def test_not_tileable_is_whole(self, monkeypatch):
        assert choose_tile((1, 3, 9000, 9000), Capabilities(tileable=False), CPU) is None

    def test_cuda_uses_free_memory(self, monkeypatch):
        free = {"bytes": 0}
        monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (free["bytes"], 80 * 2**30))
        monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: 0)
        monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: 0)
        c = caps(memory_mb_per_megapixel=1000.0, tile_overlap=16)
        free["bytes"] = 40 * 2**30  # 40 GiB: 1000x1000 needs ~1 GB -> whole
        assert choose_tile((1, 3, 1000, 1000), c, CUDA) is None
        free["bytes"] = 1 * 2**30  # ~0.8 GB budget -> ~0.82 MP per call
        tile = choose_tile((1, 3, 4000, 4000), c, CUDA)
        side = padded(tile + 2 * (16 + 8), 8)
        assert MIN_TILE <= tile and side * side * 1000.0 / 1e6 <= 1024 * tiling.GPU_MEMORY_FRACTION
        assert choose_tile((4, 3, 4000, 4000), c, CUDA) < tile  # a batch needs smaller tiles
        free["bytes"] = 2**20  # almost nothing: never below the minimum
        assert choose_tile((1, 3, 4000, 4000), c, CUDA) == MIN_TILE

    def test_memory_torch_holds_cached_counts_as_free(self, monkeypatch):
        """The driver counts torch's cache as taken: after one image, the next
        would get smaller tiles (and other output bytes) than the first."""
        gib = 2**30
        monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (1 * gib, 4 * gib))
        monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: 3 * gib)  # 1 GiB weights, 2 cached
        monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: 1 * gib)
        assert tiling._device_budget_mb(CUDA) == 3 * 1024 * tiling.GPU_MEMORY_FRACTION
        monkeypatch.setattr(torch.mps, "recommended_max_memory", lambda: 8 * gib, raising=False)
        monkeypatch.setattr(torch.mps, "driver_allocated_memory", lambda: 6 * gib, raising=False)  # 4 GiB of it cached
        monkeypatch.setattr(torch.mps, "current_allocated_memory", lambda: 2 * gib, raising=False)
        assert tiling._device_budget_mb(torch.device("mps")) == 6 * 1024 * tiling.GPU_MEMORY_FRACTION

    def test_auto_on_cpu_runs_once(self):
        calls = []
        run_tiled(lambda x, m: calls.append(1) or x, torch.rand(1, 3, 300, 300), capabilities=caps(), device=CPU)
        assert calls == [1]


# ----------------------------------------------------------------------------
# Out of memory
# ----------------------------------------------------------------------------


def oom_above(limit: int, error=torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")):
    """A fake applier that runs out of memory on inputs larger than ``limit`` px."""
    seen = []

    def op(x, m):
        seen.append(tuple(x.shape[-2:]))
        if max(x.shape[-2:]) > limit:
            raise error
        return x + 1

    op.seen = seen
    return op


class TestOutOfMemory:
    def test_halves_tile_and_retries(self, moved, caplog, monkeypatch):
        freed = []
        monkeypatch.setattr(torch.cuda, "empty_cache", lambda: freed.append(1))
        image = torch.rand(1, 3, 300, 300)
        op = oom_above(200)
        with caplog.at_level(logging.WARNING, logger="imgedit"):
            out = run_tiled(op, image, capabilities=caps(tile_overlap=0, pad_multiple=1), device=CUDA, tile=None)
        assert torch.allclose(out, image + 1)
        assert op.seen[0] == (300, 300) and all(max(s) <= 150 for s in op.seen[1:])
        assert freed and "retrying with 150 px tiles" in caplog.text

    @pytest.mark.parametrize("message", ["MPS backend out of memory (MPS allocated: 9 GB)",
                                         "Invalid buffer size: 12.00 GB"])  # one buffer over Metal's largest
    def test_mps_runtime_error_counts_as_oom(self, moved, monkeypatch, caplog, message):
        monkeypatch.setattr(torch.mps, "empty_cache", lambda: None)
        op = oom_above(200, RuntimeError(message))
        with caplog.at_level(logging.WARNING, logger="imgedit"):
            out = run_tiled(op, torch.zeros(1, 3, 300, 300), capabilities=caps(), device="mps", tile=None)
        assert torch.equal(out, torch.ones(1, 3, 300, 300))
        assert "out of memory on mps" in caplog.text

    def test_falls_back_to_cpu(self, moved, caplog):
        built = []

        def fallback():
            built.append(1)
            return lambda x, m: x * 2

        image = torch.rand(1, 3, 300, 300)
        with caplog.at_level(logging.WARNING, logger="imgedit"):
            out = run_tiled(oom_above(0), image, capabilities=caps(), device=CUDA, tile=None, fallback=fallback)
        assert torch.allclose(out, image * 2) and built == [1]
        assert "falling back to the CPU" in caplog.text

    def test_without_fallback_raises_device_error(self, moved):
        with pytest.raises(DeviceError, match=r"out of memory on cuda:0 even with 128 px tiles; try --device cpu"):
            run_tiled(oom_above(0), torch.rand(1, 3, 300, 300), capabilities=caps(), device=CUDA, tile=None)

    def test_not_tileable_goes_straight_to_fallback(self, moved, caplog):
        op = oom_above(0)
        c = Capabilities(tileable=False)
        with caplog.at_level(logging.WARNING, logger="imgedit"):
            out = run_tiled(op, torch.zeros(1, 3, 300, 300), capabilities=c, device=CUDA, fallback=lambda: identity)
        assert len(op.seen) == 1 and torch.equal(out, torch.zeros(1, 3, 300, 300))
        with pytest.raises(DeviceError, match="cannot be tiled"):
            run_tiled(op, torch.zeros(1, 3, 300, 300), capabilities=c, device=CUDA)

    def test_the_cpu_allocators_failure_is_out_of_memory_too(self, caplog):
        error = RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate memory: "
                             "you tried to allocate 38076596224 bytes. Error code 12 (Cannot allocate memory)")
        with caplog.at_level(logging.WARNING, logger="imgedit"):
            out = run_tiled(oom_above(200, error), torch.zeros(1, 3, 300, 300), capabilities=caps(), device=CPU, tile=None)
        assert torch.equal(out, torch.ones(1, 3, 300, 300)) and "retrying with 150 px tiles" in caplog.text
        with pytest.raises(DeviceError, match=r"out of memory on cpu \(this operation cannot be tiled\); try a smaller"):
            run_tiled(oom_above(0, error), torch.zeros(1, 3, 64, 64), capabilities=Capabilities(tileable=False), device=CPU)

    def test_cpu_oom_has_no_cpu_fallback(self):
        with pytest.raises(DeviceError, match="out of memory on cpu"):
            image = torch.rand(1, 3, 64, 64)
            run_tiled(oom_above(0), image, capabilities=caps(), device=CPU, fallback=lambda: identity)


def test_aligned_cores_fall_on_the_grid_and_still_partition():
    for length, tile, align, offset in [(1000, 384, 16, 8), (97, 40, 16, 8), (33, 10, 16, 0), (5000, 1286, 32, 5)]:
        tiles = [t for t in plan_tiles(length, 50, tile, 4, align, offset) if t.core.left == 0]  # one column
        tops = [t.core.top for t in tiles]
        assert tops[0] == 0 and all((top - offset) % align == 0 for top in tops[1:])
        assert all(a.core.bottom == b.core.top for a, b in zip(tiles, tiles[1:])) and tiles[-1].core.bottom == length
        assert all(t.core.height < tile + align for t in tiles)
