"""The Python API holds tensors and options to the contract the CLI and the
plugin guide promise: the caller's tensor is never changed, masks reach
plugins as float holes, and bad values are refused before any stage runs."""

import pytest
import torch

import imgedit
from imgedit.errors import ImgeditError, MaskError, ShapeError, UsageError
from imgedit.operations import Capabilities, Operation


@pytest.fixture
def recorder(test_plugin):
    """Register ``probe.seen``, which records the image and mask it is given."""
    calls = []

    def create(ctx):
        def apply(image, mask):
            calls.append((image.clone(), None if mask is None else mask.clone()))
            return image
        return apply

    op = Operation("probe", "seen", create, capabilities=Capabilities(needs_mask=True))
    test_plugin("probe_plugin", register_operations=lambda register: register(op))
    return calls


# --- the caller's tensor -----------------------------------------------------------------

@pytest.mark.parametrize("channels", [3, 1])
def test_an_applier_editing_in_place_never_changes_the_callers_tensor(test_plugin, channels):
    op = Operation("halve", "inplace", lambda ctx: (lambda image, mask: image.mul_(0.5)))
    test_plugin("in_place_plugin", register_operations=lambda register: register(op))
    given = torch.rand(1, channels, 8, 8)
    before = given.clone()
    out = imgedit.run("halve", given)
    assert torch.equal(given, before)
    assert torch.equal(out, before.expand(-1, 3, -1, -1) * 0.5)


# --- masks ---------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype, values, hole", [
    (torch.uint8, (0, 76, 255), (0, 0, 1)),  # as an 8-bit mask file: above 127 is the hole
    (torch.bool, (False, True, True), (0, 1, 1)),
    (torch.int64, (0, 1, 7), (0, 1, 1)),  # 0/1 labels: nonzero is the hole
    (torch.float32, (0.1, 0.5, 0.9), (0, 1, 1)),  # fractional: from 0.5
])
def test_a_mask_reaches_the_plugin_as_float_holes(recorder, dtype, values, hole):
    mask = torch.zeros(1, 1, 6, 6, dtype=dtype)
    for column, value in enumerate(values):
        mask[..., column] = value
    imgedit.run("probe", torch.rand(1, 3, 6, 6), mask=mask)
    got = recorder[0][1]
    assert got.dtype == torch.float32 and set(got.unique().tolist()) <= {0.0, 1.0}
    assert got[0, 0, 0, :3].tolist() == [float(h) for h in hole]


def test_one_mask_serves_every_image_of_a_batch(recorder):
    mask = torch.zeros(1, 1, 6, 6, dtype=torch.bool)
    mask[..., 2:4, 2:4] = True
    imgedit.run("probe", torch.rand(3, 3, 6, 6), mask=mask)
    assert recorder[0][1].shape == (3, 1, 6, 6) and recorder[0][1].sum() == 12


@pytest.mark.parametrize("mask, error, message", [
    (torch.ones(1, 1, 4, 4), ShapeError, "mask: expected a (B, 1, H, W) = (2, 1, 6, 6) tensor"),
    (torch.ones(2, 3, 6, 6), ShapeError, "got (2, 3, 6, 6)"),
    (torch.ones(6, 6), ShapeError, "got (6, 6)"),
    ([[1, 0]], ShapeError, "got list"),
    (torch.full((2, 1, 6, 6), float("nan")), UsageError, "mask values must be finite"),
    (torch.ones(2, 1, 6, 6, dtype=torch.uint8), MaskError, "for 0/1 values pass mask.bool()"),
    (torch.zeros(1, 1, 6, 6), MaskError, "mask: the hole is empty (no pixel is 1): there is nothing to fill"),
    (torch.ones(2, 1, 6, 6).index_fill_(0, torch.tensor([1]), 0), MaskError, "the hole of image 2 of 2 is empty"),
])
def test_a_bad_mask_is_refused_before_any_stage(recorder, mask, error, message):
    with pytest.raises(error) as info:
        imgedit.run("probe", torch.rand(2, 3, 6, 6), mask=mask)
    assert message in str(info.value) and recorder == []


def test_a_mask_box_outside_the_image_is_refused_as_the_cli_refuses_it(invoke, photo, tmp_path):
    with pytest.raises(MaskError, match="mask_box 100,100,6,6 lies outside the 64x48 image") as info:
        imgedit.run("inpaint method=telea", torch.rand(1, 3, 48, 64), mask_box=(100, 100, 6, 6))
    cli = invoke("inpaint", photo, "--method", "telea", "--mask-box", "100,100,6,6", "-o", tmp_path / "o.png")
    assert cli.exit_code == info.value.exit_code == 2 and "lies outside the 64x48 image" in cli.output


def test_a_stage_that_needs_a_mask_without_one_is_refused_before_any_stage_runs(test_plugin):
    ran = []
    first = Operation("count", "calls", lambda ctx: (lambda image, mask: ran.append(1) or image))
    test_plugin("counting_plugin", register_operations=lambda register: register(first))
    with pytest.raises(UsageError, match=r"stage 2 \(inpaint\) needs a mask: pass mask=.* or mask_box="):
        imgedit.run("count | inpaint method=telea", torch.rand(1, 3, 16, 16))
    assert ran == []


# --- the input's values --------------------------------------------------------------------

@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_a_non_finite_input_is_a_usage_error_about_the_input(recorder, value):
    image = torch.rand(1, 3, 8, 8)
    image[0, 1, 2, 3] = value
    with pytest.raises(UsageError, match="image values must be finite"):
        imgedit.run("denoise method=nlm", image)
    with pytest.raises(UsageError, match="image values must be finite"):
        imgedit.run("probe", image, mask_box=(1, 1, 2, 2))
    assert recorder == []


# --- options for paths: checked as the CLI checks them -------------------------------------

@pytest.mark.parametrize("option, message", [
    ({"format": "gif"}, "format must be one of jpeg, png, tiff, webp, bmp, got 'gif'"),  # --format refuses gif
    ({"dilate": -1}, "dilate must be an integer in [0, 1000], got -1"),
    ({"color_tolerance": 999}, "color_tolerance must be an integer in [0, 255], got 999"),
    ({"quality": True}, "quality must be an integer in [1, 100], got True"),
    ({"overwrite": "no"}, "overwrite must be True or False, got 'no'"),
    ({"recursive": 1}, "recursive must be True or False, got 1"),
    ({"depth": 0}, "depth must be an integer in [1, any], got 0"),
    ({"masks": None}, "unknown option(s): masks"),
])
def test_options_the_cli_would_refuse_are_refused_before_any_image(photo, tmp_path, option, message):
    out = tmp_path / "out"
    with pytest.raises(UsageError) as info:
        imgedit.run("inpaint method=telea", photo, out, mask_box=(4, 4, 8, 8), **option)
    assert str(info.value) == message
    assert not out.exists()  # no image, no journal


def test_overwrite_no_does_not_overwrite(photo, tmp_path):
    existing = tmp_path / "out.png"
    existing.write_bytes(b"keep me")
    with pytest.raises(UsageError):
        imgedit.run("inpaint method=telea", photo, existing, mask_box=(4, 4, 8, 8), overwrite="no")
    assert existing.read_bytes() == b"keep me"


def test_options_the_cli_takes_are_taken(photo, tmp_path):
    summary = imgedit.run("inpaint method=telea", photo, tmp_path / "out.jpg", mask_box=(4, 4, 8, 8),
                          format="JPEG", quality=80, dilate=2, overwrite=True, depth=2, workers=None)
    assert len(summary.done) == 1 and (tmp_path / "out.jpg").read_bytes()[:2] == b"\xff\xd8"


def test_a_files_result_says_its_exit_code_zero_when_done(photo, tmp_path):
    bad = tmp_path / "in" / "bad.png"
    bad.parent.mkdir()
    bad.write_bytes(b"not a picture")
    (tmp_path / "in" / "good.png").write_bytes(photo.read_bytes())
    with pytest.raises(imgedit.errors.BatchError) as failed:
        imgedit.run("inpaint method=telea", tmp_path / "in", tmp_path / "out", mask_box=(4, 4, 8, 8))
    results = sorted(failed.value.summary.results, key=lambda r: r.source.name)
    assert [(r.source.name, r.status, r.exit_code) for r in results] == [
        ("bad.png", "failed", 1), ("good.png", "done", 0)]


def test_ctrl_c_stops_a_run_over_paths_as_a_keyboard_interrupt_with_its_summary(test_plugin, photo, tmp_path):
    # the runner ends the writes in flight and saves the journal; the host's
    # Ctrl-C must still reach the host, not return as if the run were done
    calls = []

    def create(ctx):
        def apply(image, mask):
            calls.append(1)
            if len(calls) == 2:
                raise KeyboardInterrupt
            return image

        return apply

    test_plugin("stopping_plugin", register_operations=lambda register: register(Operation("stopper", "copy", create)))
    (tmp_path / "in").mkdir()
    for name in ("a.png", "b.png", "c.png"):
        (tmp_path / "in" / name).write_bytes(photo.read_bytes())
    with pytest.raises(KeyboardInterrupt) as stopped:
        imgedit.run("stopper", tmp_path / "in", tmp_path / "out")
    summary = stopped.value.summary
    assert summary.interrupted and [r.source.name for r in summary.done] == ["a.png"]
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == ["a.png"]
    resumed = imgedit.run("stopper", tmp_path / "in", tmp_path / "out")  # the same call goes on where it stopped
    assert len(resumed.skipped) == 1 and len(resumed.done) == 2


def test_progress_hears_of_each_image_in_order_with_the_count_and_total(photo, tmp_path):
    (tmp_path / "in").mkdir()
    for name in ("a.png", "b.png", "c.png"):
        (tmp_path / "in" / name).write_bytes(photo.read_bytes())
    heard = []
    summary = imgedit.run("denoise method=nlm sigma=5", tmp_path / "in", tmp_path / "out",
                          progress=lambda result, count, total: heard.append((result.source.name, count, total)))
    assert heard == [("a.png", 1, 3), ("b.png", 2, 3), ("c.png", 3, 3)]
    assert [r.source.name for r in summary.done] == ["a.png", "b.png", "c.png"]


def test_an_error_in_progress_stops_the_run_with_what_was_written_kept_and_the_call_resumes(photo, tmp_path):
    (tmp_path / "in").mkdir()
    names = [f"{i}.png" for i in range(6)]
    for name in names:
        (tmp_path / "in" / name).write_bytes(photo.read_bytes())
    heard = []

    def cancel_after_two(result, count, total):
        heard.append(count)
        if count == 2:
            raise RuntimeError("cancelled by the caller")

    with pytest.raises(RuntimeError, match="cancelled by the caller"):
        imgedit.run("denoise method=nlm sigma=5", tmp_path / "in", tmp_path / "out", progress=cancel_after_two)
    assert heard == [1, 2]  # not called again while the writes in flight ended
    written = sorted(p.name for p in (tmp_path / "out").glob("*.png"))
    assert len(written) < len(names) and not list((tmp_path / "out").glob("*.tmp*"))
    resumed = imgedit.run("denoise method=nlm sigma=5", tmp_path / "in", tmp_path / "out")
    assert len(resumed.skipped) == len(written) and len(resumed.done) == len(names) - len(written)


@pytest.mark.parametrize("target", [torch.rand(1, 3, 8, 8), __import__("numpy").zeros((8, 8, 3), "uint8")])
def test_progress_is_refused_for_an_image_in_memory(target):
    with pytest.raises(UsageError, match="progress is for paths"):
        imgedit.run("denoise method=nlm sigma=5", target, progress=lambda *a: None)


# --- what comes back -----------------------------------------------------------------------

@pytest.fixture
def halving(test_plugin):
    """Register ``halve.copy`` (``image * 0.5``), which records whether autograd was on."""
    grad_enabled = []

    def create(ctx):
        return lambda image, mask: grad_enabled.append(torch.is_grad_enabled()) or image * 0.5

    test_plugin("halving_plugin", register_operations=lambda register: register(Operation("halve", "copy", create)))
    return grad_enabled


def test_an_input_that_requires_grad_gets_no_graph_and_a_detached_result(halving):
    given = torch.rand(1, 3, 8, 8, requires_grad=True)
    out = imgedit.run("halve", given)
    assert halving == [False]  # no graph built through the operation
    assert not out.requires_grad and out.grad_fn is None
    assert torch.equal(out, given.detach() * 0.5)
    nlm = imgedit.run("denoise method=nlm sigma=20", given)  # a real operation: as detached
    assert not nlm.requires_grad and nlm.shape == given.shape


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_the_result_keeps_the_inputs_dtype(halving, dtype):
    given = torch.rand(2, 3, 8, 8).to(dtype)
    out = imgedit.run("halve", given)
    assert out.dtype == dtype and torch.equal(out, (given.float() * 0.5).to(dtype))


# --- tensors and paths do not mix; tensors without values ----------------------------------

@pytest.mark.parametrize("image, options", [
    (torch.empty(1, 3, 8, 8, device="meta"), {"mask_box": (1, 1, 2, 2)}),
    (torch.rand(1, 3, 8, 8), {"mask": torch.ones(1, 1, 8, 8, device="meta")}),
])
def test_a_meta_tensor_is_a_shape_error_naming_the_device(recorder, image, options):
    with pytest.raises(ShapeError, match="got a tensor on the meta device"):
        imgedit.run("probe", image, **options)
    assert recorder == []


def test_a_mask_tensor_with_file_targets_is_a_usage_error(photo, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(UsageError, match=r"for files the mask is a mask file or folder .*got Tensor"):
        imgedit.run("inpaint method=telea", photo, out, mask=torch.ones(1, 1, 8, 8))
    assert not out.exists()


# --- the module ----------------------------------------------------------------------------

def test_the_errors_to_catch_are_at_the_top_level():
    assert imgedit.ImgeditError is ImgeditError and imgedit.UsageError is UsageError
    assert {"ImgeditError", "UsageError"} <= set(imgedit.__all__)


def test_the_module_examples_run():
    import doctest

    from imgedit import api

    result = doctest.testmod(api)
    assert result.attempted >= 4 and result.failed == 0


def test_the_api_summary_names_the_results_a_folder_scan_left_out(tmp_path):
    # the CLI's --json listed them; the API threw the list away
    import numpy as np
    from PIL import Image

    for name in ("a.png", "b.png"):
        Image.fromarray(np.full((16, 16, 3), 120, np.uint8)).save(tmp_path / name)
    imgedit.run("denoise method=nlm sigma=5", tmp_path)  # a.denoise.png, b.denoise.png beside the photos
    again = imgedit.run("denoise method=nlm sigma=5", tmp_path, output=tmp_path / "out")
    assert sorted(p.name for p in again.left_out) == ["a.denoise.png", "b.denoise.png"]
    assert len(again.as_dict()["left_out_results"]) == 2 and len(again.done) == 2


def test_an_error_in_progress_at_the_end_still_lets_every_write_in_flight_end_before_it_is_raised(photo, tmp_path,
                                                                                                monkeypatch):
    # the last images' results are heard while the writes drain: raised there, run() returned with writers still going
    import threading
    import time

    from imgedit import runner

    encode = runner._Batch.encode
    monkeypatch.setattr(runner._Batch, "encode", lambda self, work: time.sleep(0.3) or encode(self, work))
    (tmp_path / "in").mkdir()
    for i in range(6):
        (tmp_path / "in" / f"{i}.png").write_bytes(photo.read_bytes())

    def fail_at_the_end(result, count, total):
        if count == total - 1:
            raise RuntimeError("late")

    with pytest.raises(RuntimeError, match="late"):
        imgedit.run("denoise method=nlm sigma=5", tmp_path / "in", tmp_path / "out", progress=fail_at_the_end)
    assert not [t.name for t in threading.enumerate() if t.name.startswith("imgedit-write")]
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == [f"{i}.png" for i in range(6)]
    assert len(imgedit.run("denoise method=nlm sigma=5", tmp_path / "in", tmp_path / "out").skipped) == 6
