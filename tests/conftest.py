import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import pipeline  # noqa: F401  (TF_USE_LEGACY_KERAS before any test imports TensorFlow)

REPO = Path(__file__).resolve().parent.parent


def run_invoke(*args: str, env: dict | None = None, timeout: int = 900) -> subprocess.CompletedProcess:
    """Run `invoke ARGS` from the repository as a user would, capturing its output."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=REPO, env=full_env, capture_output=True,
                          text=True, timeout=timeout)


def assert_clean_error(proc: subprocess.CompletedProcess, *fragments: str) -> str:
    """A bad input must give a non-zero exit and a one-line cause on stderr, never a traceback."""
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


def _checkout_outputs() -> set[str]:
    """Every path under the checkout's build/ folder (and the folder itself)."""
    found = {"build"} if (REPO / "build").exists() else set()
    for folder, dirs, files in os.walk(REPO / "build"):
        found.update(os.path.join(folder, n) for n in dirs + files)
    return found


@pytest.fixture(scope="session", autouse=True)
def nothing_written_into_the_checkout():
    """Tests never write into the checkout: every build goes to a --build-dir under pytest's tmp_path."""
    before = _checkout_outputs()
    yield
    new = sorted(_checkout_outputs() - before)
    assert not new, f"the tests wrote into the checkout: {new[:10]}"


@pytest.fixture(scope="session")
def esp32_build(tmp_path_factory):
    """One real `invoke build --board=esp32` of the default model, shared by the tests that inspect its output."""
    build_dir = tmp_path_factory.mktemp("build")
    proc = run_invoke("build", "--board=esp32", f"--build-dir={build_dir}")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = build_dir / "esp32" / "digits"
    return {"dir": out, "build_dir": build_dir, "proc": proc,
            "report": json.loads((out / "report.json").read_text())}


@pytest.fixture(scope="session")
def host_harness(tmp_path_factory):
    """The harness core + test backend + POSIX port, built with AddressSanitizer and UBSan."""
    from pipeline.hil.harness_build import build_host

    return build_host(tmp_path_factory.mktemp("harness") / "ee_host", sanitize=True)


def harness_args(report: dict, input_bytes: int = 64, outputs: int = 10, *extra: str) -> list[str]:
    return ["--input-bytes", str(input_bytes), "--outputs", str(outputs), "--model", report["model"],
            "--hash", report["model_hash"], "--work", "20", *extra]


def standin_tool(folder, name: str, why: str, on_build: str):
    """A STAND-IN for a framework's build tool (named as such in its own text): a shell script that appends its
    arguments to calls.txt and runs `on_build` (shell) so a later step finds what a real build leaves. Returns the
    bin folder to put first on PATH and the calls file."""
    bin_dir = folder / "bin"
    bin_dir.mkdir(exist_ok=True)
    calls = folder / "calls.txt"
    script = bin_dir / name
    script.write_text(f"#!/bin/sh\n# STAND-IN for {name} ({why})\necho \"$@\" >> {calls}\n{on_build}\n")
    script.chmod(0o755)
    return bin_dir, calls


def configure_fails_once(build: str, flag, product: str) -> str:
    """Shell for a STAND-IN build tool over CMake and Ninja (standin_tool's on_build): the first build fails in the
    configure, leaving `build`/CMakeCache.txt and no build.ninja; with that left in place a build goes straight to
    Ninja, which cannot load build.ninja (as west and idf.py do); from a clean folder it configures and leaves
    `product` (a path under `build`)."""
    return (f'if [ -f "{build}/CMakeCache.txt" ] && [ ! -f "{build}/build.ninja" ]; then\n'
            '  echo "ninja: error: loading build.ninja: No such file or directory" >&2; exit 1; fi\n'
            f'mkdir -p "{build}/CMakeFiles" && echo cache > "{build}/CMakeCache.txt"\n'
            f'if [ ! -f {flag} ]; then touch {flag}; echo "CMake Error: configure failed" >&2; exit 1; fi\n'
            f'echo rules > "{build}/build.ninja" && mkdir -p "$(dirname "{build}/{product}")" && '
            f'echo image > "{build}/{product}"\n')


SYSTEM_TOOLS = {  # what the tests use from the system, and the Debian package that brings it (.ci/run installs them)
    "g++": "g++", "arm-none-eabi-g++": "gcc-arm-none-eabi libnewlib-arm-none-eabi libstdc++-arm-none-eabi-newlib",
    "qemu-system-arm": "qemu-system-arm", "chromium": "chromium", "cmake": "cmake", "initdb": "postgresql",
}


def _find_tool(name: str) -> str | None:
    import glob
    import shutil

    return shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))), None)


def pytest_report_header(config):
    """Say up front which system tools are missing: the tests that need them are skipped, each with its reason."""
    missing = {tool: pkg for tool, pkg in SYSTEM_TOOLS.items() if _find_tool(tool) is None}
    if not missing:
        return "system tools: all found (" + ", ".join(SYSTEM_TOOLS) + ")"
    return ("system tools missing (the tests that need them are skipped, reasons listed at the end): "
            + "; ".join(f"{tool} (Debian: {pkg})" for tool, pkg in missing.items()))
