"""The Ray engine (``--engine ray``) against the local runner: the same
bytes, summary, exit code and journal; resume across engines; Ctrl-C; the
message when Ray is missing. Runs on one local Ray instance with 2 CPUs."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from PIL import Image

from imgedit.errors import ImgeditError
from imgedit.journal import JOURNAL_NAME, SHARDS_NAME
from imgedit.operations import Operation
from imgedit.plugins import plugin_info

from conftest import fake_distribution, interruptible, reaped, smooth_rgb, wait_for_outputs

ray = pytest.importorskip("ray")

PIPELINE = "denoise method=nlm sigma=10"


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    if ray.is_initialized():  # pragma: no cover - someone else's instance
        yield
        return
    ray.init(num_cpus=2, object_store_memory=100 * 2**20, include_dashboard=False, log_to_driver=False,
             logging_level="ERROR")
    yield
    ray.shutdown()


@pytest.fixture
def folder(tmp_path):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    for i in range(5):
        Image.fromarray(smooth_rgb(24, 32, seed=i)).save(src / ("sub" if i == 4 else ".") / f"img{i}.png")
    return src


def run(invoke, engine, *args):
    result = invoke("run", "-p", PIPELINE, *args, "--json", "--engine", engine)
    return result.exit_code, json.loads(result.stdout)


def records(out):
    """The journal's records without their times, in a comparable order."""
    lines = (json.loads(line) for line in (out / JOURNAL_NAME).read_text().splitlines())
    return sorted((r["dst"], r["key"], r["status"], r.get("size"), r.get("error")) for r in lines)


def test_same_bytes_summary_exit_code_and_journal_as_local(invoke, folder, tmp_path):
    (folder / "broken.png").write_bytes(b"not a png")  # fails alone; the others go on
    outcomes = {}
    for engine in ("local", "ray"):
        code, summary = run(invoke, engine, folder, "-r", "-o", tmp_path / engine)
        summary.pop("seconds")
        outcomes[engine] = code, json.loads(json.dumps(summary).replace(str(tmp_path / engine), "OUT"))
    assert outcomes["ray"] == outcomes["local"]
    code, summary = outcomes["ray"]
    assert code == 1 and summary["done"] == 5 and summary["failed"] == 1
    assert "broken.png: not an image" in summary["failures"][0]["error"]
    written = sorted(p.relative_to(tmp_path / "local") for p in (tmp_path / "local").rglob("*.png"))
    assert [str(p) for p in written] == ["img0.png", "img1.png", "img2.png", "img3.png", "sub/img4.png"]
    for rel in written:
        assert (tmp_path / "ray" / rel).read_bytes() == (tmp_path / "local" / rel).read_bytes()
    assert records(tmp_path / "ray") == records(tmp_path / "local")
    assert not (tmp_path / "ray" / SHARDS_NAME).exists()  # folded into the main file at the end


def test_each_engine_resumes_the_others_run(invoke, folder, tmp_path):
    out = tmp_path / "out"
    code, first = run(invoke, "local", folder / "img0.png", folder / "img1.png", "-o", out)
    assert code == 0 and first["done"] == 2
    code, second = run(invoke, "ray", folder, "-r", "-o", out)
    assert code == 0 and (second["skipped"], second["done"]) == (2, 3)
    code, third = run(invoke, "local", folder, "-r", "-o", out)
    assert code == 0 and third["skipped"] == 5
    code, fourth = run(invoke, "ray", folder, "-r", "-o", out, "--retry-failed")
    assert code == 0 and fourth["skipped"] == 5


def test_interrupted_ray_run_resumes_without_redoing(invoke, folder, tmp_path):
    out = tmp_path / "out"
    assert run(invoke, "local", folder, "-r", "-o", out)[0] == 0  # the same records a Ray run writes, faster
    # as a Ray run killed midway leaves it: records still in an actor's shard,
    # one output renamed into place without its "done" line, one never written
    kept, shard = [], []
    for line in (out / JOURNAL_NAME).read_text().splitlines(keepends=True):
        if '"img2.png"' in line or '"sub/img4.png"' in line and '"done"' in line:
            continue
        (shard if '"img1.png"' in line or '"sub/img4.png"' in line else kept).append(line)
    (out / JOURNAL_NAME).write_text("".join(kept))
    (out / SHARDS_NAME).mkdir()
    (out / SHARDS_NAME / "node-1-abc.jsonl").write_text("".join(shard))
    (out / "img2.png").unlink()
    code, summary = run(invoke, "ray", folder, "-r", "-o", out)
    assert code == 0 and summary["done"] == 1 and summary["outputs"][0]["input"].endswith("img2.png")
    assert summary["skipped"] == 4 and not (out / SHARDS_NAME).exists()


def test_ctrl_c_stops_and_a_local_run_resumes(invoke, test_plugin, tmp_path):
    """In a fresh process with its own Ray, as a user's shell runs it: Ctrl-C
    reaches the whole process group (imgedit and the Ray it started)."""
    site = tmp_path / "site"
    site.mkdir()
    fake_distribution(site, "imgedit_slowtest", SLOW_PLUGIN)
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    for i in range(24):
        Image.fromarray(smooth_rgb(16, 16, seed=i)).save(src / f"im{i:02d}.png")
    cmd = [sys.executable, "-m", "imgedit", "run", "-p", "slow", str(src), "-o", str(out), "--engine", "ray"]
    proc = subprocess.Popen(cmd, env={**os.environ, "PYTHONPATH": str(site)}, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, preexec_fn=interruptible)
    with reaped(proc, group=True):  # a failed wait: the run and the Ray it started, its process group
        wait_for_outputs(proc, out, 4, timeout=120)
        os.killpg(proc.pid, signal.SIGINT)
        _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "run the same command again to resume" in stderr and "Traceback" not in stderr
    finished = list(out.glob("*.png"))
    for path in finished:
        Image.open(path).load()  # decodes fully: complete
    assert 4 <= len(finished) < 24
    # the same operation, minus the sleep, resumes here on the local engine
    test_plugin("imgedit_slowtest", register_operations=lambda register: register(
        Operation("slow", "sleep", lambda context: lambda image, mask: 1.0 - image)))
    plugin_info("imgedit_slowtest").version = "0.3"  # the installed distribution's: the recipe names plugin and version
    result = invoke("run", "-p", "slow", src, "-o", out, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["skipped"] == len(finished) and summary["done"] == 24 - len(finished)
    assert not (out / SHARDS_NAME).exists()


SLOW_PLUGIN = """
import time
from imgedit import hookimpl
from imgedit.operations import Operation

def create(context):
    def apply(image, mask):
        time.sleep(0.25)
        return 1.0 - image
    return apply

@hookimpl
def register_operations(register):
    register(Operation("slow", "sleep", create))
"""


def test_collisions_refused_before_any_work(invoke, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for name in ("a.png", "a.jpg"):
        Image.fromarray(smooth_rgb(16, 16)).save(src / name)
    result = invoke("denoise", src, "--sigma", "5", "-o", tmp_path / "out", "--format", "png", "--engine", "ray")
    assert result.exit_code == 2 and "would both be written" in result.stderr
    assert not (tmp_path / "out").exists()


def test_without_ray_says_how_to_install_it(invoke, folder, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now fails, as when it is not installed
    result = invoke("denoise", folder, "-o", tmp_path / "out", "--engine", "ray")
    assert result.exit_code == 2
    assert result.stderr.strip() == "Error: the Ray engine needs Ray: pip install 'ray[data]>=2.9'"
    assert not (tmp_path / "out").exists()


def test_unreachable_cluster_is_one_line_at_once(monkeypatch):
    import types

    import imgedit.ray_engine as engine

    with pytest.raises(ImgeditError, match=r"cannot reach Ray at 127\.0\.0\.1:1: "):
        engine._check_reachable("127.0.0.1:1")  # a closed port: refused
    # an address where nothing answers: one connection attempt, bounded by the probe's timeout
    attempts = []

    def silent(address, timeout=None):
        attempts.append((address, timeout))
        raise TimeoutError("timed out")

    monkeypatch.setattr(engine, "socket", types.SimpleNamespace(create_connection=silent))
    with pytest.raises(ImgeditError, match=r"^cannot reach Ray at ray://10\.9\.8\.7:6379: timed out$"):
        engine._check_reachable("ray://10.9.8.7:6379")
    assert attempts == [(("10.9.8.7", 6379), engine.PROBE_SECONDS)] and 0 < engine.PROBE_SECONDS <= 30

    class UnstartedRay:  # ray.init would retry such an address for minutes: the probe refuses it first
        def is_initialized(self):
            return False

        def init(self, **kwargs):
            raise AssertionError("ray.init was called before the address was probed")

    with pytest.raises(ImgeditError, match=r"cannot reach Ray at 10\.9\.8\.7:6379: timed out"):
        engine._connect(UnstartedRay(), "10.9.8.7:6379")
    assert len(attempts) == 2
    engine._check_reachable("auto")  # Ray's own lookup: nothing to check
    engine._check_reachable(None)
    assert len(attempts) == 2


@pytest.mark.parametrize("answer, ok", [
    (None, False),  # accepts, then says nothing
    (b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n", False),  # the dashboard, say
    (bytes([0, 0, 0, 4, 0, 0, 0, 0, 0]), True),  # an HTTP/2 SETTINGS frame: what Ray's gRPC ports send
])
def test_a_cluster_address_must_answer_as_ray(answer, ok, monkeypatch):
    import socket
    import threading

    import imgedit.ray_engine as engine

    monkeypatch.setattr(engine, "PROBE_SECONDS", 1)
    server = socket.create_server(("127.0.0.1", 0))
    address = f"127.0.0.1:{server.getsockname()[1]}"

    def serve():
        connection, _ = server.accept()
        with connection:
            connection.recv(64)
            if answer is not None:
                connection.sendall(answer)
            time.sleep(1.5)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        if ok:
            engine._check_reachable(address)
        else:
            with pytest.raises(ImgeditError, match=r"answers, but not as Ray: give the head node's GCS port"):
                engine._check_reachable(address)
    finally:
        thread.join()
        server.close()


def test_a_finished_jobs_rerun_does_not_start_ray(invoke, folder, tmp_path, monkeypatch):
    out = tmp_path / "out"
    assert run(invoke, "local", folder, "-r", "-o", out)[0] == 0
    import imgedit.ray_engine as engine

    def no_cluster(*args):
        raise AssertionError("Ray was started for a job with nothing left to do")

    monkeypatch.setattr(engine, "_connect", no_cluster)
    monkeypatch.setattr(engine, "_dataset", no_cluster)
    code, summary = run(invoke, "ray", folder, "-r", "-o", out)
    assert code == 0 and summary["skipped"] == 5 and summary["done"] == 0
    code, summary = run(invoke, "ray", folder, "-r", "-o", out, "--retry-failed")
    assert code == 0 and summary["skipped"] == 5


def test_threads_are_said_to_be_ignored_with_ray(invoke, folder, tmp_path, monkeypatch):
    out = tmp_path / "out"
    assert run(invoke, "local", folder, "-r", "-o", out)[0] == 0  # all done: Ray is not started
    result = invoke("run", "-p", PIPELINE, folder, "-r", "-o", out, "--engine", "ray", "--threads", "2")
    assert result.exit_code == 0 and "ignoring --threads: with --engine ray each actor computes on one thread" in result.stderr
    local = invoke("run", "-p", PIPELINE, folder, "-r", "-o", out, "--threads", "2")
    assert local.exit_code == 0 and "ignoring --threads" not in local.stderr
