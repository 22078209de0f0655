"""Pipelines: parsing and checking before any image is touched; running."""

import pytest
import torch

from imgedit.errors import UsageError
from imgedit.pipeline import Pipeline


def test_parse_stages_and_params():
    pipeline = Pipeline.parse("denoise method=nlm sigma=25 strength=0.5 | inpaint method=ns radius=3")
    assert [s.operation.key for s in pipeline.stages] == ["denoise.nlm", "inpaint.ns"]
    assert pipeline.stages[0].params == {"sigma": 25.0, "strength": 0.5}
    assert pipeline.stages[1].params == {"radius": 3}
    assert pipeline.needs_mask and pipeline.label == "denoise-inpaint"


@pytest.mark.parametrize(
    "text,message",
    [
        ("denoise | sharpen", "stage 2 (sharpen): unknown operation 'sharpen'"),
        ("denoise loudness=3", "stage 1 (denoise): unknown parameter 'loudness'"),
        ("denoise sigma=lots", "stage 1 (denoise): parameter 'sigma' must be float or 'auto'"),
        ("denoise sigma=300", "must be in [0"),
        ("inpaint method=magic", "unknown method 'magic'"),
        ("denoise |", "stage 2 is empty"),
        ("denoise || inpaint", "stage 2 is empty"),
        ("denoise sigma", "expected key=value"),
        ("denoise sigma=25 sigma=30", "stage 1 (denoise): parameter 'sigma' is given twice"),
        ("denoise | inpaint method='ns", "stage 2: no closing quotation"),
        ("denoise sigma=nan", "parameter 'sigma' must be a finite number"),
        ("denoise method=nlm sigma=inf", "must be a finite number"),
        ("denoise.nlm method=vae", "stage 1 (denoise.nlm): the name says method 'nlm' but method=vae is given"),
        ("denoise.magic", "stage 1 (denoise.magic): unknown method 'magic' for 'denoise'"),
        # a misspelt name gets the nearest known one
        ("denoize", "stage 1 (denoize): unknown operation 'denoize'; did you mean denoise? (known: "),
        ("denoise method=nlm sigm=25", "unknown parameter 'sigm' for method 'nlm'; did you mean sigma? (known: "),
        ("denoise method=NML", "unknown method 'NML' for 'denoise'; did you mean nlm? (known: "),
    ],
)
def test_bad_pipelines_name_the_stage(text, message):
    with pytest.raises(UsageError) as info:
        Pipeline.parse(text)
    assert message in str(info.value)


def test_a_name_near_nothing_known_gets_no_guess():
    with pytest.raises(UsageError) as info:
        Pipeline.parse("blur")
    assert "did you mean" not in str(info.value) and "unknown operation 'blur' (known: " in str(info.value)


def test_quotes_keep_a_bar_inside_a_value():
    from imgedit.pipeline import parse_stages

    assert parse_stages('style name="a | b" strength=0.5|denoise') == [
        ("style", {"name": "a | b", "strength": "0.5"}),
        ("denoise", {}),
    ]


def test_a_hash_is_text_not_a_comment():
    from imgedit.pipeline import parse_stages

    assert parse_stages("denoise method=nlm sigma=25#strong | style style_image=art#1.png") == [
        ("denoise", {"method": "nlm", "sigma": "25#strong"}),
        ("style", {"style_image": "art#1.png"}),
    ]
    with pytest.raises(UsageError, match="'sigma' must be float"):  # refused, not read as sigma=25 and one stage
        Pipeline.parse("denoise method=nlm sigma=25#strong | inpaint method=telea")


def test_the_dotted_key_names_the_method_as_plans_show_it():
    pipeline = Pipeline.parse("denoise.nlm sigma=25 | inpaint.telea")
    assert [s.operation.key for s in pipeline.stages] == ["denoise.nlm", "inpaint.telea"]
    assert Pipeline.parse("denoise.nlm method=nlm").stages[0].operation.key == "denoise.nlm"
    assert Pipeline.from_specs([("inpaint.ns", {"radius": 3})]).stages[0].params == {"radius": 3}  # as a file's op


def test_file_values_are_not_coerced():
    # a pipeline file's true is not the number 1, and 2.7 is not the int 2
    with pytest.raises(UsageError, match="'sigma' must be float"):
        Pipeline.from_specs([("denoise", {"method": "nlm", "sigma": True})])
    with pytest.raises(UsageError, match="'radius' must be int"):
        Pipeline.from_specs([("inpaint", {"method": "ns", "radius": 2.7})])
    assert Pipeline.from_specs([("inpaint", {"method": "ns", "radius": 3.0})]).stages[0].params == {"radius": 3}
    with pytest.raises(UsageError, match="'name' must be str, got False .a file's yes/no/on/off are booleans"):
        Pipeline.from_specs([("style", {"name": False})])  # YAML's "name: no": not the style 'False'



def test_specs_rebuild_the_same_pipeline():
    pipeline = Pipeline.parse("denoise method=nlm sigma=auto | inpaint method=ns radius=3")
    assert Pipeline.from_specs(pipeline.specs()) == pipeline
    assert pipeline.specs()[1] == ("inpaint", {"method": "ns", "radius": 3})


def test_defaults_and_auto():
    stage = Pipeline.parse("denoise").stages[0]
    assert stage.params["sigma"] == "auto" and stage.params["strength"] == 1.0


def test_built_pipeline_applies_to_tensor():
    image = torch.rand(1, 3, 32, 40)
    mask = torch.zeros(1, 1, 32, 40)
    mask[..., 10:20, 10:20] = 1
    built = Pipeline.parse("inpaint method=telea").build("cpu")
    out = built.apply(image, mask)
    assert out.shape == image.shape
    assert torch.equal(out * (1 - mask), image * (1 - mask))


def test_prepare_sees_the_whole_image_before_tiling():
    from imgedit.operations import Capabilities, Operation
    from imgedit.pipeline import Stage

    seen = []

    class Applier:
        def __init__(self, level=None):
            self.level = level

        def prepare(self, image, mask):
            seen.append(tuple(image.shape))
            return Applier(float(image.mean()))

        def __call__(self, image, mask=None):
            return torch.full_like(image, self.level)

    op = Operation("flat", "mean", lambda ctx: Applier(), capabilities=Capabilities(tileable=True, tile_overlap=2))
    built = Pipeline((Stage(op, {}),)).build("cpu")
    image = torch.rand(1, 3, 300, 260)
    out = built.apply(image, tile=128)
    assert seen == [(1, 3, 300, 260)]
    assert torch.allclose(out, torch.full_like(image, float(image.mean())))


def test_the_cpu_fallback_after_running_out_of_gpu_memory_is_prepared_on_the_whole_image(monkeypatch):
    """A GPU out of memory even at the smallest tile falls back to the CPU: the
    applier built there must decide from the whole image as the GPU's did (a
    noise level estimated once), not from each tile it is then given; and the
    images after it go to the CPU at once, not each through a failing GPU first."""
    from imgedit import tiling
    from imgedit.operations import Capabilities, Operation
    from imgedit.pipeline import RunContext, Stage

    monkeypatch.setattr(tiling, "_to_device", lambda x, device, dtype: None if x is None else x.to(dtype=dtype))
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    prepared_on = []

    class Applier:
        def __init__(self, device, level=None):
            self.device, self.level = device, level

        def prepare(self, image, mask):
            prepared_on.append((self.device.type, tuple(image.shape)))
            return Applier(self.device, float(image.mean()))

        def __call__(self, image, mask=None):
            if self.device.type == "cuda":
                raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
            return torch.full_like(image, self.level if self.level is not None else float(image.mean()))

    op = Operation("flat", "mean", lambda ctx: Applier(ctx.device),
                   capabilities=Capabilities(tileable=True, tile_overlap=2, devices=("cpu", "cuda")))
    built = Pipeline((Stage(op, {}),)).build("cpu")
    gpu = torch.device("cuda")
    built.built[0].context, built.built[0].applier = RunContext(gpu, torch.float32), Applier(gpu)  # as built on a GPU
    image = torch.cat([torch.zeros(1, 3, 300, 130), torch.ones(1, 3, 300, 130)], dim=3)  # halves unlike the whole
    out = built.apply(image, tile=128)
    assert prepared_on == [("cuda", (1, 3, 300, 260)), ("cpu", (1, 3, 300, 260))]
    assert torch.allclose(out, torch.full_like(image, 0.5))  # the whole image's level in every tile
    prepared_on.clear()
    out = built.apply(image * 0.5, tile=128)  # the next image: straight to the CPU, where the last one ended
    assert prepared_on == [("cpu", (1, 3, 300, 260))] and torch.allclose(out, torch.full_like(image, 0.25))


def test_bf16_on_the_cpu_gives_the_applier_fp32_tensors_under_autocast(monkeypatch):
    from imgedit import devices
    from imgedit.operations import Capabilities, Operation
    from imgedit.pipeline import Stage

    monkeypatch.setattr(devices, "cpu_has_bf16", lambda: True)
    seen = []

    def create(context):
        seen.append(("context", context.dtype))

        def applier(image, mask=None):
            product = torch.matmul(image[0, 0], image[0, 0].T)  # autocast runs matrix products in bf16
            seen.append(("call", image.dtype, product.dtype))
            return image * 0.5

        return applier

    allowed = Operation("halve", "net", create, capabilities=Capabilities(cpu_bf16=True))
    image = torch.rand(1, 3, 16, 16)
    out = Pipeline((Stage(allowed, {}),)).build("cpu", "bf16").apply(image)
    assert seen == [("context", torch.float32), ("call", torch.float32, torch.bfloat16)]
    assert out.dtype == torch.float32 and torch.equal(out, image * 0.5)
    assert torch.matmul(image[0, 0], image[0, 0]).dtype == torch.float32  # the scope ended with the stage

    seen.clear()
    fp32_only = Operation("halve", "net", create, capabilities=Capabilities())
    Pipeline((Stage(fp32_only, {}),)).build("cpu", "bf16").apply(image)
    assert seen == [("context", torch.float32), ("call", torch.float32, torch.float32)]


def test_an_operations_check_sees_the_parsed_params_and_its_error_names_the_stage(test_plugin):
    from imgedit.operations import Operation, Param

    seen = []

    def check(params):
        seen.append(params)
        if params["model"] not in ("small", "large"):
            raise UsageError(f"upscale: unknown model '{params['model']}'")  # a plugin may name itself; said once

    op = Operation("upscale", "net", lambda ctx, **p: (lambda image, mask: image), check=check,
                   params=(Param("model", str, "small"), Param("factor", int, 2)))
    test_plugin("checked_plugin", register_operations=lambda register: register(op))
    Pipeline.parse("upscale factor=4")
    assert seen[-1] == {"model": "small", "factor": 4}  # defaults filled in, types converted
    with pytest.raises(UsageError) as error:
        Pipeline.parse("denoise sigma=5 | upscale model=huge")
    assert str(error.value) == "stage 2 (upscale): unknown model 'huge'"


@pytest.mark.parametrize("bad_output, what", [
    (lambda image: image[:, :1], "expected the input's shape"),
    (lambda image: (image * 255).to(torch.uint8), "expected a float tensor in [0, 1]"),  # would be written white
    (lambda image: image * float("nan"), "expected finite values, got NaN or infinity"),  # would be written black
    (lambda image: image.clone().index_fill_(-1, torch.tensor([0]), float("-inf")), "expected finite values"),
    (lambda image: image * 255, "it looks like a 0-255 scale: divide by 255"),  # would be written white
    (lambda image: image - 2.0, "expected values in [0, 1]"),  # would be written black
    (lambda image: (image - 0.5) * 6 + 0.5, "got -2."),  # a strong sharpen: not a 0-255 scale
    (lambda image: (image - 0.5) * 6 + 0.5, "clamp the result to [0, 1] in the operation"),
    (lambda image: None, "the applier returned None"),
])
def test_an_applier_that_breaks_the_output_contract_is_named_with_its_stage(test_plugin, bad_output, what):
    from imgedit.errors import PluginError
    from imgedit.operations import Operation

    op = Operation("broken", "net", lambda ctx, **p: (lambda image, mask: bad_output(image)))
    test_plugin("broken_plugin", register_operations=lambda register: register(op))
    built = Pipeline.parse("denoise method=nlm sigma=5 | broken").build("cpu")
    with pytest.raises(PluginError) as error:
        built.apply(torch.rand(1, 3, 16, 16))
    assert str(error.value).startswith("stage 2 (broken.net, plugin broken_plugin) failed: applier output: ")
    assert what in str(error.value)


def _one_stage(create, **capabilities):
    from imgedit.operations import Capabilities, Operation
    from imgedit.pipeline import Stage

    op = Operation("edit", "test", create, capabilities=Capabilities(**capabilities))
    return Pipeline((Stage(op, {}),))


@pytest.mark.parametrize("in_place, pure", [
    (lambda image: image.mul_(0.5), lambda image: image * 0.5),
    (lambda image: image.sub_(0.25).clamp_(min=0), lambda image: (image - 0.25).clamp(min=0)),
    (lambda image: torch.relu_(image.sub_(0.3)), lambda image: torch.relu(image - 0.3)),
])
def test_an_applier_editing_its_input_in_place_gives_the_tiled_output_of_one_that_does_not(in_place, pure):
    image = torch.rand(1, 3, 56, 72)
    caps = dict(tileable=True, tile_overlap=4)
    edited = _one_stage(lambda ctx: (lambda x, mask=None: in_place(x)), **caps).build("cpu")
    copied = _one_stage(lambda ctx: (lambda x, mask=None: pure(x)), **caps).build("cpu")
    tiled = edited.apply(image.clone(), tile=16)  # overlapping tiles: each must be a copy of its own
    assert torch.equal(tiled, copied.apply(image.clone(), tile=16))
    assert torch.allclose(tiled, edited.apply(image.clone(), tile=0), atol=1e-6)


def test_a_mask_edited_in_place_is_still_whole_for_the_next_stage_and_the_next_tile():
    from imgedit.operations import Capabilities, Operation
    from imgedit.pipeline import Stage

    def stages(count, erase, **capabilities):
        seen = []

        def create(ctx):
            def apply(image, mask):
                seen.append(float(mask.sum()))
                if erase:
                    mask.zero_()
                return image
            return apply

        op = Operation("erase", "mask", create, capabilities=Capabilities(needs_mask=True, **capabilities))
        return Pipeline((Stage(op, {}),) * count).build("cpu"), seen

    mask = torch.zeros(1, 1, 48, 48)
    mask[..., 8:40, 8:40] = 1
    # two stages on the whole image; one stage on nine tiles, the middle one cut without padding
    for count, tile, caps, calls in ((2, 0, {}, 2), (1, 16, dict(tileable=True, tile_overlap=2), 9)):
        erasing, seen = stages(count, True, **caps)
        reading, expected = stages(count, False, **caps)
        erasing.apply(torch.rand(1, 3, 48, 48), mask.clone(), tile=tile)
        reading.apply(torch.rand(1, 3, 48, 48), mask.clone(), tile=tile)
        assert seen == expected and len(seen) == calls


def test_a_whole_untiled_image_is_not_copied_for_its_only_reader():
    given = []
    built = _one_stage(lambda ctx: (lambda x, mask=None: given.append(x) or x)).build("cpu")
    image = torch.rand(1, 3, 16, 16)
    built.apply(image)
    assert given[0] is image  # a batch's decoded image is read by nobody else: a copy would be waste


def test_out_of_range_output_is_refused_on_the_whole_tiled_result_but_a_little_overshoot_is_fine():
    from imgedit.errors import PluginError

    overshoot = _one_stage(lambda ctx: (lambda x, mask=None: x * 1.4 - 0.2), tileable=True, tile_overlap=2)
    out = overshoot.build("cpu").apply(torch.rand(1, 3, 40, 40), tile=16)
    assert out.min() < 0 and out.max() > 1  # sharpening-like overshoot: clamped when written, not refused
    scaled = _one_stage(lambda ctx: (lambda x, mask=None: x * 255), tileable=True, tile_overlap=2)
    with pytest.raises(PluginError, match=r"failed: applier output: expected values in \[0, 1\].*got 0(\.\d+)? to 2\d\d"):
        # seeded: an unseeded minimum below 1/2550 printed as 4.56e-05 now and then
        scaled.build("cpu").apply(torch.rand(1, 3, 40, 40, generator=torch.Generator().manual_seed(0)), tile=16)


def test_an_out_of_range_result_writes_no_file(test_plugin, invoke, photo, tmp_path):
    from imgedit.operations import Operation

    op = Operation("brighten", "bad", lambda ctx: (lambda image, mask: image * 255))
    test_plugin("scale_plugin", register_operations=lambda register: register(op))
    result = invoke("run", "-p", "brighten", photo, "-o", tmp_path / "out.png")
    assert result.exit_code == 1 and "stage 1 (brighten.bad, plugin scale_plugin)" in result.output
    assert "0-255 scale" in result.output and not (tmp_path / "out.png").exists()


def test_create_returning_none_is_refused_when_the_pipeline_is_built(test_plugin):
    from imgedit.errors import PluginError
    from imgedit.operations import Operation

    op = Operation("forgetful", "net", lambda ctx: None)
    test_plugin("forgetful_plugin", register_operations=lambda register: register(op))
    with pytest.raises(PluginError) as error:
        Pipeline.parse("forgetful").build("cpu")
    assert str(error.value).startswith("stage 1 (forgetful.net, plugin forgetful_plugin) could not start: "
                                       "create returned None, not an applier")


@pytest.mark.parametrize("tile, shown", [
    (16, "a tile of the (1, 3, 50, 70) image"),
    (0, "the (1, 3, 50, 70) image padded by the host"),
])
def test_a_wrong_output_shape_says_what_the_host_gave_the_applier(tile, shown):
    from imgedit.errors import PluginError

    caps = dict(tileable=True, tile_overlap=4, pad_multiple=8)
    built = _one_stage(lambda ctx: (lambda x, mask=None: x[..., :-1]), **caps).build("cpu")
    with pytest.raises(PluginError, match="expected the input's shape") as error:
        built.apply(torch.rand(1, 3, 50, 70), tile=tile)
    assert shown in str(error.value)
    returns_none = _one_stage(lambda ctx: (lambda x, mask=None: None), **caps).build("cpu")
    with pytest.raises(PluginError, match="the applier returned None, not an image tensor") as error:
        returns_none.apply(torch.rand(1, 3, 50, 70), tile=tile)
    assert "expected" not in str(error.value)  # no padded or tile shape the author never made


def test_a_tileable_applier_with_output_shape_cannot_start():
    from imgedit.errors import PluginError

    class SideBySide:
        def __call__(self, image, mask=None):
            return torch.cat([image, image], dim=-1)

        def output_shape(self, shape):
            return (*shape[:-1], 2 * shape[-1])

    with pytest.raises(PluginError, match=r"stage 1 \(edit.test, plugin \?\) could not start: the applier has output_shape"):
        _one_stage(lambda ctx: SideBySide(), tileable=True, tile_overlap=4).build("cpu")



def test_an_output_over_the_pixel_limit_is_refused_before_the_applier_runs(monkeypatch):
    # a photo read under the limit must not become a larger image through a
    # parameter (16 fills side by side): the limit that reading obeys holds
    from imgedit.errors import UsageError

    calls = []

    class SideBySide:
        def __call__(self, image, mask=None):
            calls.append(image.shape)
            return torch.cat([image, image], dim=-1)

        def output_shape(self, shape):
            return (*shape[:-1], 2 * shape[-1])

    built = _one_stage(lambda ctx: SideBySide()).build("cpu")
    monkeypatch.setenv("IMGEDIT_MAX_PIXELS", str(50 * 70 * 2))
    assert built.apply(torch.rand(1, 3, 50, 70)).shape == (1, 3, 50, 140)  # at the limit
    monkeypatch.setenv("IMGEDIT_MAX_PIXELS", str(50 * 70 * 2 - 1))
    with pytest.raises(UsageError, match=r"the output of stage 1 \(edit\) would be 140x50 = 0.007 MP, above the limit"):
        built.apply(torch.rand(1, 3, 50, 70))
    assert len(calls) == 1

# --- a pipeline made of Stage objects --------------------------------------------------------

def _nlm():
    from imgedit.registry import get_registry

    return get_registry().get("denoise", "nlm")


def test_stages_given_directly_are_checked_as_parsed_ones():
    from imgedit.pipeline import Stage

    made = Pipeline([Stage(_nlm(), {"sigma": "10"})])  # a list, a string value
    assert made == Pipeline.parse("denoise method=nlm sigma=10")
    assert made.stages[0].params == {"sigma": 10.0, "strength": 1.0} and isinstance(made.stages, tuple)
    for params, message in (({"bogus": 1}, "stage 1 (denoise): unknown parameter 'bogus'"),
                            ({"sigma": -5}, "stage 1 (denoise): parameter 'sigma' must be in [0, 255]"),
                            ({"sigma": "ten"}, "stage 1 (denoise): parameter 'sigma' must be float or 'auto'")):
        with pytest.raises(UsageError) as info:
            Pipeline((Stage(_nlm(), params),))
        assert message in str(info.value)
    with pytest.raises(UsageError, match="the pipeline is empty"):
        Pipeline(())
    with pytest.raises(UsageError, match="stage 1: expected a Stage, got str"):
        Pipeline(("denoise",))


def test_nlm_takes_only_auto_as_auto():
    from imgedit_classical.ops import _NlmApplier

    image = torch.rand(1, 3, 16, 16)
    assert _NlmApplier("AUTO", 1.0).prepare(image).levels is not None  # estimated once, for the whole image
    unprepared = _NlmApplier("ten", 1.0)
    assert unprepared.prepare(image) is unprepared
    with pytest.raises(UsageError, match="sigma must be a number or 'auto', got 'ten'"):
        unprepared(image)


def test_equal_pipelines_hash_alike():
    a, b = Pipeline.parse("denoise method=nlm sigma=10 | inpaint"), Pipeline.parse("denoise.nlm sigma=10.0 | inpaint")
    assert a == b and hash(a) == hash(b) and len({a, b, Pipeline.parse("denoise method=nlm")}) == 2
    assert {a: "cached"}[b] == "cached"


# --- BuiltPipeline.apply ---------------------------------------------------------------------

def test_stages_run_without_autograd_and_give_a_detached_result():
    seen = []
    built = _one_stage(lambda ctx: (lambda x, mask=None: seen.append(torch.is_grad_enabled()) or x * 0.5)).build("cpu")
    image = torch.rand(1, 3, 8, 8, requires_grad=True)
    out = built.apply(image)
    assert seen == [False] and not out.requires_grad and torch.equal(out, image.detach() * 0.5)


def test_an_operation_that_optimises_per_image_still_gets_gradients():
    def optimise(x, mask=None):  # as style.neural does: a few gradient steps towards 0.25
        with torch.enable_grad():
            work = x.clone().requires_grad_(True)
            for _ in range(20):
                (grad,) = torch.autograd.grad((work - 0.25).square().sum(), work)
                work = (work - 0.25 * grad).detach().requires_grad_(True)
        return work.detach()

    out = _one_stage(lambda ctx: optimise).build("cpu").apply(torch.rand(1, 3, 8, 8))
    assert torch.allclose(out, torch.full_like(out, 0.25), atol=1e-3)


def test_a_gray_image_is_refused_before_any_stage():
    from imgedit.errors import ShapeError

    ran = []
    built = _one_stage(lambda ctx: (lambda x, mask=None: ran.append(1) or x)).build("cpu")
    with pytest.raises(ShapeError, match=r"\(B, 3, H, W\) RGB \(for gray: image.repeat\(1, 3, 1, 1\)\), got \(1, 1, 8, 8\)"):
        built.apply(torch.rand(1, 1, 8, 8))
    assert ran == []
