"""SIGINT and SIGTERM end every command cleanly: exit 130/143, one `error:` line, no temporary files or
directories left behind, no child process left running. Run on the real console script, in its own process."""
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from tiny_files import hidden, marked_processes, write_tiny

COMPRESS = str(Path(sys.executable).with_name("compress"))
TESTS = str(Path(__file__).resolve().parent)
NATIVE_TRACE = ("C++ Traceback", "*** SIGTERM", "Error Message Summary", "received by PID", "Traceback")


STARTED: list = []


@pytest.fixture(autouse=True)
def _nothing_left_running():
    """Whatever a test asserts, the processes it started do not outlive it."""
    yield
    while STARTED:
        cmd = STARTED.pop()
        if cmd.proc.poll() is None:
            cmd.proc.kill()
        for pid in marked_processes(cmd.mark):
            os.kill(pid, signal.SIGKILL)


def _as_in_a_terminal():
    """A command started from a terminal has SIGINT and SIGTERM at their defaults (this test process may have
    been started with SIGINT ignored, as a shell's background job is, and a child would keep ignoring it)."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)


class Command:
    """``compress ARGS`` in ``cwd``, its stderr collected line by line, every process it starts marked."""

    def __init__(self, args, cwd):
        self.mark = uuid.uuid4().hex
        env = {**os.environ, "PYTHONPATH": TESTS, "COMPRESS_TEST_MARK": self.mark}
        env.pop("COMPRESS_DEBUG", None)
        self.proc = subprocess.Popen([COMPRESS, *map(str, args)], cwd=cwd, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, preexec_fn=_as_in_a_terminal)
        self.lines = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        STARTED.append(self)

    def _read(self):
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, predicate, timeout=120.0):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if predicate():
                return
            if self.proc.poll() is not None:
                pytest.fail(f"the command ended (exit {self.proc.returncode}) before the moment to signal it:\n"
                            + "\n".join(self.lines))
            time.sleep(0.05)
        pytest.fail("timed out waiting:\n" + "\n".join(self.lines))

    def logged(self, text):
        return any(text in line for line in self.lines)

    def signal_and_wait(self, sig, timeout=60.0):
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            pytest.fail("the command did not end after " + signal.Signals(sig).name)
        self._reader.join(5)
        return self.proc.returncode

    def no_orphans(self, timeout=5.0):
        end = time.monotonic() + timeout
        while (left := marked_processes(self.mark)) and time.monotonic() < end:
            time.sleep(0.1)
        return left == []

    def stop(self, sig):
        """Send ``sig``: the command must end with 128 + its number, one ``error: interrupted`` line (no
        traceback, Python's or Paddle's C++ one) and no process of its own left running."""
        assert self.signal_and_wait(sig) == 128 + sig
        assert "interrupted" in self.error_line()
        assert self.no_orphans(), "a child process (the timing worker, the resource tracker) outlived the command"

    def error_line(self):
        text = "\n".join(self.lines)
        assert not any(t in text for t in NATIVE_TRACE), text
        lines = [ln for ln in self.lines if ln.strip()]
        errors = [ln for ln in lines if ln.startswith("error:")]
        assert len(errors) == 1 and lines[-1] == errors[0], text
        return errors[0]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return write_tiny(tmp_path_factory.mktemp("sig") / "m.pdparams", width=4)


def _workdir(tmp_path, model):
    for f in (model, model.with_name("m.compress.json")):
        os.link(f, tmp_path / f.name)
    return tmp_path / model.name


def test_sigterm_during_export_leaves_no_temp_directory_and_no_process(model, tmp_path):
    m = _workdir(tmp_path, model)
    cmd = Command(["export", m, "--out", tmp_path / "exp"], tmp_path)
    cmd.wait_for(lambda: any(p.name.startswith(".exp.") for p in tmp_path.iterdir()))
    cmd.stop(signal.SIGTERM)
    assert not (tmp_path / "exp").exists() and hidden(tmp_path) == []


@pytest.mark.slow  # over 25 s on 2 cores; the full suite runs it
def test_sigint_during_int8_export(tmp_path):
    from compress.workflows.sweep import sample_model

    src = sample_model("vit_tiny")  # its INT8 step (calibration, quantization, accuracy) takes about 2 s
    for f in (src, src.with_name("vit_tiny.compress.json")):
        shutil.copy2(f, tmp_path / f.name)
    cmd = Command(["export", tmp_path / src.name, "--out", tmp_path / "exp", "--int8"], tmp_path)
    cmd.wait_for(lambda: cmd.logged("building onnx-int8"))
    time.sleep(0.2)
    cmd.stop(signal.SIGINT)
    assert not (tmp_path / "exp").exists() and hidden(tmp_path) == []


@pytest.mark.parametrize("step", ["building paddle-legacy", "Paddle INT8 candidate"])
def test_sigterm_during_the_legacy_subprocess_leaves_no_orphan(tmp_path, step):
    """The legacy-mode subprocess (the legacy format, PaddleSlim's quantization) ends with the command."""
    from compress.workflows.sweep import sample_model

    src = sample_model("resnet_tiny")
    for f in (src, src.with_name("resnet_tiny.compress.json")):
        shutil.copy2(f, tmp_path / f.name)
    cmd = Command(["export", tmp_path / src.name, "--out", tmp_path / "exp", "--format", "paddle-legacy", "--int8"],
                  tmp_path)
    cmd.wait_for(lambda: cmd.logged(step) and len(marked_processes(cmd.mark)) >= 2)
    time.sleep(0.5)
    cmd.stop(signal.SIGTERM)
    assert not (tmp_path / "exp").exists() and hidden(tmp_path) == []


def test_sigterm_during_healing_prints_one_line_and_writes_nothing(model, tmp_path):
    m = _workdir(tmp_path, model)
    cmd = Command(["prune", m, "--blocks", "0", "--epochs", 200, "--patience", 200, "--out", tmp_path / "k.pdparams"],
                  tmp_path)
    cmd.wait_for(lambda: cmd.logged("test accuracy: original"))
    time.sleep(1.0)  # healing epochs are running
    cmd.stop(signal.SIGTERM)
    assert not (tmp_path / "k.pdparams").exists() and hidden(tmp_path) == []


def test_sigterm_to_report_during_timing_leaves_no_orphan(model, tmp_path):
    m = _workdir(tmp_path, model)
    cmd = Command(["report", m, "--out", tmp_path / "rep", "--batch", 1, "--runs", 10**6, "--seconds", 600],
                  tmp_path)
    cmd.wait_for(lambda: cmd.logged("in a separate process") and len(marked_processes(cmd.mark)) >= 2)
    time.sleep(3.0)  # the worker is importing and timing
    cmd.stop(signal.SIGTERM)
    assert not (tmp_path / "rep").exists()          # a report it did not finish leaves nothing of its own
    assert hidden(tmp_path) == []


@pytest.mark.parametrize("delay", [0.2, 0.6, 1.0, 1.4, 1.8, 2.4])
def test_sigterm_while_starting_ends_with_one_line_and_nothing_on_stdout(model, tmp_path, delay):
    """A signal during the first seconds (while Paddle is imported, which installs a C++ handler of its own) ends
    the command with 128 + its number, one `error:` line on stderr, no native trace, and nothing on stdout."""
    cmd = Command(["blocks", _workdir(tmp_path, model), "--json"], tmp_path)
    time.sleep(delay)
    if cmd.proc.poll() is not None:
        pytest.skip("the command had already finished")
    code = cmd.signal_and_wait(signal.SIGTERM)
    out = cmd.proc.stdout.read()
    if code == 0:
        pytest.skip("the signal came after the work was done")
    assert code == 128 + signal.SIGTERM, "\n".join(cmd.lines)
    assert "interrupted" in cmd.error_line()
    assert out == "" and not any(t in out for t in NATIVE_TRACE)


def test_two_exports_to_one_directory_the_second_is_told_who_writes_it(model, tmp_path):
    """Ownership from start to publish: a second export to the same --out (another format) is refused with the
    owner's pid and command, and the first one's files are all there (not silently lost)."""
    src = _workdir(tmp_path, model)
    out = tmp_path / "E"
    first = Command(["export", src, "--out", out, "--format", "onnx", "--int8"], tmp_path)   # INT8: a while
    first.wait_for(lambda: (tmp_path / ".E.lock").exists())
    second = subprocess.run([COMPRESS, "export", str(src), "--out", str(out), "--format", "paddle"],
                            capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": TESTS})
    assert second.returncode == 2, second.stderr
    assert f"is being written by pid {first.proc.pid} (compress export" in second.stderr
    assert "still running" in second.stderr and "Traceback" not in second.stderr
    assert first.proc.wait(300) == 0, "\n".join(first.lines)
    assert (out / "model.onnx").is_file() and not (tmp_path / ".E.lock").exists()
