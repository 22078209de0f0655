"""Resuming a training run from the command line, for every train verb
(shared code: imgedit.training): a resumed run goes on in its own folder
unless --out names another, never over another run; a run at --steps
exports its weights without training; only the options typed are warned
about and recorded."""

import json

import pytest
import torch

from imgedit.checkpoint import load_checkpoint

TINY_TRAIN_ARGS = {
    "gan": ["--size", 16, "--batch", 2],
    "style": ["--patch", 16, "--style-size", 32, "--batch", 1, "--preview-every", 1, "--no-skips"],
    "denoise": ["--patch", 32, "--widths", "8,16,16,16", "--batch", 2],
}


@pytest.fixture
def data(tmp_path):
    from conftest import smooth_images

    return smooth_images(tmp_path / "data", count=8)


def _args(verb, data, painting=None):
    args = ["train", verb, "--data", data, *TINY_TRAIN_ARGS[verb], "-q"]
    return args + (["--style-image", painting or data / "0.png"] if verb == "style" else [])


def _steps_logged(folder):
    return [json.loads(line)["step"] for line in (folder / "log.jsonl").read_text().splitlines()]


def _step(folder, verb):
    return load_checkpoint(folder / "checkpoint.safetensors", kind=verb)["step"]


@pytest.mark.parametrize("verb", sorted(TINY_TRAIN_ARGS))
def test_a_resumed_run_without_out_goes_on_in_its_own_folder(verb, data, tmp_path, invoke, user_home, monkeypatch):
    monkeypatch.chdir(tmp_path)  # run A goes to the verb's default folder, runs/<verb>
    default = tmp_path / "runs" / verb
    result = invoke(*_args(verb, data), "--steps", 3, "--export", tmp_path / "a.safetensors")
    assert result.exit_code == 0, result.output
    result = invoke(*_args(verb, data, data / "1.png"), "--steps", 1, "--out", "b", "--export", tmp_path / "b.safetensors")
    assert result.exit_code == 0, result.output
    a_log, a_checkpoint = (default / "log.jsonl").read_text(), (default / "checkpoint.safetensors").read_bytes()

    result = invoke(*_args(verb, data)[:-2] if verb == "style" else _args(verb, data), "--steps", 2, "--resume", "b")
    assert result.exit_code == 0, result.output
    assert _step(tmp_path / "b", verb) == 2 and _steps_logged(tmp_path / "b")[-1] == 2
    assert (default / "log.jsonl").read_text() == a_log  # run A untouched
    assert (default / "checkpoint.safetensors").read_bytes() == a_checkpoint
    if verb == "style":
        assert "Previews: b/samples" in result.output and (tmp_path / "b" / "samples" / "step_000002.png").is_file()
    if verb != "denoise":  # the denoiser writes no sample sheets
        assert sorted(p.name for p in (default / "samples").iterdir())[-1] == "step_000003.png"
        assert "step_000002.png" in {p.name for p in (tmp_path / "b" / "samples").iterdir()}


@pytest.mark.parametrize("verb", sorted(TINY_TRAIN_ARGS))
def test_a_resumed_run_refuses_an_out_folder_holding_another_run_unless_overwrite(verb, data, tmp_path, invoke,
                                                                                 user_home):
    args = _args(verb, data)
    assert invoke(*args, "--steps", 3, "--out", tmp_path / "a", "--export", tmp_path / "a.safetensors").exit_code == 0
    assert invoke(*args, "--steps", 1, "--out", tmp_path / "b", "--export", tmp_path / "b.safetensors").exit_code == 0
    a_log = (tmp_path / "a" / "log.jsonl").read_text()

    result = invoke(*args, "--steps", 2, "--resume", tmp_path / "b", "--out", tmp_path / "a")
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1, result.output
    assert f"--out {tmp_path / 'a'} holds another training run" in result.output and "--overwrite" in result.output
    assert (tmp_path / "a" / "log.jsonl").read_text() == a_log and _step(tmp_path / "a", verb) == 3
    assert _step(tmp_path / "b", verb) == 1

    # its own folder, named by --out, is no other run's; an empty folder is fine too
    assert invoke(*args, "--steps", 2, "--resume", tmp_path / "b", "--out", tmp_path / "b").exit_code == 0
    result = invoke(*args, "--steps", 3, "--resume", tmp_path / "b", "--out", tmp_path / "c")
    assert result.exit_code == 0, result.output
    assert _step(tmp_path / "c", verb) == 3 and _step(tmp_path / "b", verb) == 2

    result = invoke(*args, "--steps", 4, "--resume", tmp_path / "b", "--out", tmp_path / "a", "--overwrite")
    assert result.exit_code == 0, result.output
    assert _step(tmp_path / "a", verb) == 4 and _steps_logged(tmp_path / "a")[-1] == 4
    assert not (tmp_path / "a" / "log.jsonl").read_text().startswith(a_log)  # run A's log replaced, not appended to


@pytest.mark.parametrize("verb", ["denoise", "style"])
def test_overwrite_on_a_resume_in_its_own_folder_keeps_the_runs_own_files(verb, data, tmp_path, invoke, user_home):
    """--overwrite (which a refused export's message suggests) replaces another
    run's files, never the resumed run's own: its log, samples and checkpoint
    are the run going on."""
    args = _args(verb, data)
    export = tmp_path / "model.safetensors"
    assert invoke(*args, "--steps", 2, "--out", tmp_path / "b", "--export", export).exit_code == 0
    result = invoke(*args, "--steps", 4, "--resume", tmp_path / "b", "--export", export, "--overwrite")
    assert result.exit_code == 0, result.output
    logged = _steps_logged(tmp_path / "b")  # style validates every step here (--preview-every 1)
    assert logged == ([1, 2, 3, 4] if verb == "style" else [2, 4]) and _step(tmp_path / "b", verb) == 4
    if verb == "style":
        assert {"step_000002.png", "step_000004.png"} <= {p.name for p in (tmp_path / "b" / "samples").iterdir()}


@pytest.mark.parametrize("verb", ["gan", "denoise"])
def test_a_plain_resume_warns_of_no_setting_it_was_not_given(verb, data, tmp_path, invoke, user_home):
    args = ["train", verb, "--data", data, "-q", "--out", tmp_path / "run", "--export", tmp_path / "w.safetensors"]
    tiny = TINY_TRAIN_ARGS[verb]
    assert invoke(*args, *tiny, "--steps", 1).exit_code == 0
    no_batch = [a for i, a in enumerate(tiny) if a != "--batch" and (i == 0 or tiny[i - 1] != "--batch")]

    result = invoke(*args[:-4], "--steps", 2, "--resume", tmp_path / "run")  # no --batch, --size or --patch
    assert result.exit_code == 0, result.output
    assert "checkpoint's settings" not in result.output
    commands = json.loads((tmp_path / "w.json").read_text())["training"]["commands"]
    assert "resumed with" not in commands[-1] and "--batch" not in commands[-1] and "--lr" not in commands[-1]
    assert f"--resume {tmp_path / 'run'}" in commands[-1] and "--steps 2" in commands[-1]

    result = invoke(*args[:-4], *no_batch, "--batch", 5, "--seed", 0, "--steps", 3, "--resume", tmp_path / "run")
    assert result.exit_code == 0, result.output
    warning = [line for line in result.output.splitlines() if "checkpoint's settings" in line]
    assert warning == ["Warning: resuming with the checkpoint's settings, not the command line's: batch 2"]
    commands = json.loads((tmp_path / "w.json").read_text())["training"]["commands"]
    assert commands[-1].endswith("  (resumed with the checkpoint's batch 2)")
    assert "--batch 5" in commands[-1] and "--seed 0" in commands[-1] and "--lr" not in commands[-1]


def test_a_typed_option_named_otherwise_in_the_config_is_warned_about(data, tmp_path, invoke, user_home):
    args = ["train", "gan", "--data", data, "--batch", 2, "-q", "--out", tmp_path / "run",
            "--export", tmp_path / "w.safetensors"]
    assert invoke(*args, "--size", 16, "--steps", 1).exit_code == 0
    result = invoke(*args, "--size", 32, "--steps", 2, "--resume", tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert "not the command line's: model.image_size 16" in result.output


def test_a_checkpoint_whose_run_exported_nothing_yet_says_how_to_export(data, tmp_path, invoke, user_home):
    from imgedit.catalog import spec_for_file
    from imgedit.errors import UsageError
    from imgedit_gan.train import GANTrainConfig, train_gan
    from imgedit_gan.model import GANConfig

    weights = tmp_path / "g2.safetensors"  # where the run would export at its end, which it never reached
    cfg = GANTrainConfig(steps=2, batch=2, model=GANConfig(image_size=16))
    train_gan(cfg, [data], tmp_path / "g2", torch.device("cpu"), export=("g2", weights))
    checkpoint = tmp_path / "g2" / "checkpoint.safetensors"
    with pytest.raises(UsageError) as caught:
        spec_for_file(checkpoint)
    said = str(caught.value)
    assert "is a training checkpoint" in said and "no weights yet (it stopped at step 2)" in said
    assert f"'imgedit train gan --data DATA --resume {checkpoint} --steps 2' exports them as they are" in said
    assert f"use {weights}" not in said

    # as it says: the weights of step 2, without training
    result = invoke("train", "gan", "--data", data, "-q", "--resume", checkpoint, "--steps", 2)
    assert result.exit_code == 0, result.output
    assert "already at step 2: exporting its weights as they are, without training" in result.output
    assert f"Exported the checkpoint's 2 steps (nothing left to train); weights: {weights.resolve()}" in result.output
    assert "Trained" not in result.output
    assert weights.is_file() and _step(tmp_path / "g2", "gan") == 2
    with pytest.raises(UsageError, match=f"use {weights}, the weights its run exported"):
        spec_for_file(checkpoint)


def _checkpoint_recording(folder, export, run=None):
    """The shipped denoiser's checkpoint (step 9000), copied into ``folder``
    with its record of the model it exports to set to ``export`` (a dict as
    runs record it, or anything else): a checkpoint downloaded to fine-tune
    from is anyone's file."""
    from imgedit.checkpoint import save_checkpoint
    from imgedit.models import shipped_weights_dir

    state = load_checkpoint(shipped_weights_dir() / "imgedit_vae" / "denoise-vae.checkpoint.safetensors", "denoise")
    state["provenance"] = json.dumps({"export": export, **({"run": run} if run else {})})
    folder.mkdir(parents=True, exist_ok=True)
    save_checkpoint(state, folder / "checkpoint.safetensors")
    return folder / "checkpoint.safetensors"


def _model_file(path, card):
    from imgedit.models import save_weights

    save_weights({"w": torch.ones(2)}, path, card)
    return path


DENOISER = "imgedit_vae.model.ConditionalVAE"


def _text_and_json(path):
    path.write_text("precious notes")
    path.with_suffix(".json").write_text('{"precious": true}')


# what a crafted checkpoint names as its model's file, what is there, and what the refusal says of it
NOT_THE_RUNS_MODEL = {
    "a text file": ("notes.txt", _text_and_json, "notes.json beside it is not a model card"),
    "a new file of another kind": ("authorized_keys", lambda p: None, "it is not a .safetensors file"),
    "a json file beside a new name": ("settings.safetensors", lambda p: p.with_suffix(".json").write_text('{"a": 1}'),
                                      "settings.json beside it is not a model card"),
    "weights without a card": ("bare.safetensors", lambda p: _model_file(p, {"name": "notes", "architecture": DENOISER})
                               .with_suffix(".json").unlink(), "there is no model card beside it (bare.json)"),
    "another model": ("other.safetensors", lambda p: _model_file(p, {"name": "other", "architecture": DENOISER}),
                      "the model there is another one (its card names 'other', the run 'notes')"),
}


@pytest.mark.parametrize("case", sorted(NOT_THE_RUNS_MODEL))
def test_a_checkpoint_cannot_make_its_resumed_run_replace_a_file_that_is_not_its_model(case, tmp_path, invoke,
                                                                                      user_home):
    from conftest import smooth_images

    # images the shipped checkpoint's patches (192 px) fit in: without the check, the run would export over the file
    data = smooth_images(tmp_path / "data", count=4, height=196, width=196)
    file_name, make, said = NOT_THE_RUNS_MODEL[case]
    victim = tmp_path / "victim" / file_name
    victim.parent.mkdir()
    make(victim)
    before = {p: p.read_bytes() for p in victim.parent.iterdir()}
    checkpoint = _checkpoint_recording(tmp_path / "evil", {"name": "notes", "path": str(victim)})

    for overwrite in ([], ["--overwrite"]):  # the checkpoint chose the file: --overwrite is no consent to replace it
        result = invoke("train", "denoise", "--data", data, "--resume", checkpoint, "--steps", 9000, *overwrite)
        assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1, result.output
        assert f"the checkpoint names {victim} as its model's file, but {said}" in result.output
        assert "pass --export FILE" in result.output and "Traceback" not in result.output
        assert {p: p.read_bytes() for p in victim.parent.iterdir()} == before
    assert sorted(p.name for p in (tmp_path / "evil").iterdir()) == ["checkpoint.safetensors"]

    # --export naming that file is the user's choice: replaced with --overwrite only, as any file there would be
    if victim.is_file():
        result = invoke("train", "denoise", "--data", data, "--resume", checkpoint, "--steps", 9000, "--export", victim)
        assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1, result.output
        assert f"a file already exists at {victim}, and " in result.output and "--overwrite" in result.output
        assert {p: p.read_bytes() for p in victim.parent.iterdir()} == before


def test_a_recorded_model_file_is_written_only_where_it_is_the_runs_own(tmp_path, user_home):
    from imgedit.errors import UsageError
    from imgedit.run_folder import check_fresh_run, recorded_model_problem

    mine = tmp_path / "models" / "mine.safetensors"
    assert recorded_model_problem(mine, "mine") == ""  # nothing there yet: the run's first export
    _model_file(mine, {"name": "mine", "architecture": DENOISER})
    assert recorded_model_problem(mine, "mine") == ""  # its own model, exported before
    assert "another one" in recorded_model_problem(mine, "yours")
    mine.unlink()
    assert recorded_model_problem(mine, "mine") == ""  # its card alone: the export writes both
    (tmp_path / "card.json").symlink_to(mine.with_suffix(".json"))
    assert "no model card" in recorded_model_problem(tmp_path / "card.safetensors", "mine")
    # a later run took the name over (--name mine --overwrite): the card names that run, and this one may not replace it
    _model_file(mine, {"name": "mine", "architecture": DENOISER, "training": {"run": "later"}})
    assert "another run's of the name 'mine'" in recorded_model_problem(mine, "mine", run="first")
    assert recorded_model_problem(mine, "mine", run="later") == "" and recorded_model_problem(mine, "mine") == ""
    mine.unlink()
    # --export takes any name: a run exported to model.pt resumes into it
    own_pt = _model_file(tmp_path / "models" / "mine.pt", {"name": "mine", "architecture": DENOISER})
    assert recorded_model_problem(own_pt, "mine") == ""

    # the way out the refusal names: --export elsewhere (a Python caller's export is always its own choice)
    victim = tmp_path / "notes.txt"
    victim.write_text("precious")
    checkpoint = _checkpoint_recording(tmp_path / "evil", {"name": "notes", "path": str(victim)})
    check_fresh_run(tmp_path / "evil", checkpoint, False, export=tmp_path / "new.safetensors", kind="denoise")
    with pytest.raises(UsageError, match="already exists at"):
        check_fresh_run(tmp_path / "evil", checkpoint, False, export=victim, kind="denoise")


@pytest.mark.parametrize("export", [{"name": 1, "path": 5}, {"path": "x.safetensors"}, "x.safetensors", [1],
                                    {"name": "x", "path": ""}, {"name": "x", "path": "a\0b.safetensors"}])
def test_a_checkpoint_recording_its_model_oddly_records_none(export, tmp_path):
    from imgedit.checkpoint import recorded_weights
    from imgedit.training import run_export

    checkpoint = _checkpoint_recording(tmp_path / "odd", export)
    assert run_export(checkpoint, "denoise") is None and recorded_weights(checkpoint) is None


def test_a_checkpoint_that_records_no_model_says_why_a_model_there_is_refused(tmp_path, user_home):
    # checkpoints written before runs recorded their model: an upgrade resumes them
    from imgedit.errors import UsageError
    from imgedit.training import check_fresh_run

    checkpoint = _checkpoint_recording(tmp_path / "old", None)
    model = _model_file(tmp_path / "models" / "mine.safetensors", {"name": "mine", "architecture": DENOISER})
    with pytest.raises(UsageError, match=r"checkpoints before 2026-12-06 do not record it\): pass --overwrite to "
                                         r"replace it \(the run's checkpoint stays\)"):
        check_fresh_run(tmp_path / "old", checkpoint, False, export=model, kind="denoise")
    check_fresh_run(tmp_path / "old", checkpoint, True, export=model, kind="denoise")
    assert checkpoint.is_file()


def test_resuming_a_run_whose_name_a_later_run_took_over_does_not_replace_that_runs_model(tmp_path, user_home):
    # train --name elephants --overwrite -o runs/new, then --resume runs/old: the old run silently replaced the new model
    from imgedit.errors import UsageError
    from imgedit.training import check_fresh_run

    model = _model_file(tmp_path / "models" / "elephants.safetensors",
                        {"name": "elephants", "architecture": DENOISER, "training": {"run": "new-run"}})
    old = _checkpoint_recording(tmp_path / "old", {"name": "elephants", "path": str(model)}, run="old-run")
    with pytest.raises(UsageError, match="another run's of the name 'elephants'"):
        check_fresh_run(tmp_path / "old", old, False, export=model, kind="denoise")
    check_fresh_run(tmp_path / "old", old, True, export=tmp_path / "models" / "elsewhere.safetensors", kind="denoise")
    new = _checkpoint_recording(tmp_path / "new", {"name": "elephants", "path": str(model)}, run="new-run")
    check_fresh_run(tmp_path / "new", new, False, export=model, kind="denoise")  # its own: resumed into it
