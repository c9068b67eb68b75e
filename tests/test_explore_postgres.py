"""invoke explore across machines, for real: a PostgreSQL server started by the test (initdb + pg_ctl on a free local
port, in a temporary folder), three `invoke explore` worker processes on one study, one of them killed (SIGKILL) in
the middle of a trial. Its trial must be failed by the heartbeat and run again by another worker, and the study must
end with exactly --trials complete trials."""
import glob
import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from conftest import REPO, assert_clean_error, run_invoke


def _postgres_bin() -> Path | None:
    """The folder of initdb, pg_ctl and postgres: on PATH, or Debian's /usr/lib/postgresql/<version>/bin."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl", path=str(Path(found).parent)):
        return Path(found).parent
    folders = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda f: int(re.sub(r"\D", "", f) or 0))
    folders = [Path(f) for f in folders if (Path(f) / "initdb").is_file() and (Path(f) / "pg_ctl").is_file()]
    return folders[-1] if folders else None


def _server_user() -> str | None:
    """PostgreSQL refuses to run as root: as root, run it as the `postgres` system user Debian's package creates
    (else `nobody`); as anyone else, as that user."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    pytest.skip("running as root and there is no postgres or nobody user to run the PostgreSQL server as")


@pytest.fixture
def postgres_url():
    """A throw-away PostgreSQL server on a free loopback port; its URL. Stopped and deleted afterwards."""
    from pipeline.hil.harness_build import free_tcp_port

    bindir = _postgres_bin()
    if bindir is None:
        pytest.skip("needs PostgreSQL's server binaries (initdb, pg_ctl): Debian's postgresql package, which .ci/run "
                    "installs")
    user = _server_user()
    # Not pytest's tmp_path: that folder is private to the user running the tests, and the server runs as another.
    root = Path(tempfile.mkdtemp(prefix="mcu-deploy-pg-"))
    data, sockets = root / "data", root / "sockets"
    sockets.mkdir()
    if user:
        entry = pwd.getpwnam(user)
        for path in (root, sockets):
            os.chown(path, entry.pw_uid, entry.pw_gid)
    port = free_tcp_port()

    def as_server(*command):
        proc = subprocess.run([str(bindir / command[0]), *command[1:]], cwd=root, user=user, capture_output=True,
                              text=True, timeout=180)
        assert proc.returncode == 0, f"{command[0]} failed: {proc.stdout[-2000:]}{proc.stderr[-2000:]}"

    try:
        as_server("initdb", "-D", str(data), "-U", "explore", "--auth=trust", "-E", "UTF8", "--no-locale")
        as_server("pg_ctl", "-D", str(data), "-l", str(root / "server.log"), "-w", "-t", "120", "-o",
                  f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off", "start")
        yield f"postgresql://explore@127.0.0.1:{port}/postgres"
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"], cwd=root,
                           user=user, capture_output=True, timeout=120)
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.slow
def test_three_workers_one_postgres_study_and_a_killed_worker(postgres_url, tmp_path):
    import optuna

    trials_wanted = 4
    command = [sys.executable, "-m", "invoke", "explore", "--model=digits", "--board=esp32",
               f"--trials={trials_wanted}", "--epochs=1", f"--storage={postgres_url}", "--heartbeat=3",
               f"--build-dir={tmp_path / 'build'}"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}  # progress lines as they happen, through the pipe
    logs = [tmp_path / f"worker{i}.log" for i in range(3)]
    victim = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE,
                              stderr=logs[0].open("w"), text=True)
    others = [subprocess.Popen(command, cwd=REPO, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, text=True)
              for log in logs[1:]]
    try:
        seen = []
        killed = None
        for line in victim.stdout:  # kill the first worker once it is inside a trial (training its model)
            seen.append(line)
            started = re.match(r"trial (\d+): started", line)
            if started:
                killed = int(started.group(1))
                time.sleep(1)
                victim.send_signal(signal.SIGKILL)
                break
        victim.wait(timeout=60)
        assert killed is not None, "".join(seen)[-3000:] + logs[0].read_text()[-3000:]
        assert victim.returncode == -signal.SIGKILL
        for worker in others:
            worker.wait(timeout=1500)
    finally:
        for worker in [victim, *others]:
            if worker.poll() is None:
                worker.kill()
    outputs = [log.read_text() for log in logs[1:]]
    assert all(w.returncode == 0 for w in others), [o[-3000:] for o in outputs]

    trials = optuna.load_study(study_name="digits@esp32", storage=postgres_url).get_trials()
    by_number = {t.number: t for t in trials}
    states = [t.state for t in trials]
    # Exactly the requested trials complete; nothing left running or queued.
    assert states.count(optuna.trial.TrialState.COMPLETE) == trials_wanted, states
    assert set(states) <= {optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL}, states
    # The killed worker's trial was failed (no heartbeat) and run again, with its configuration, by another worker.
    assert by_number[killed].state == optuna.trial.TrialState.FAIL
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == killed]
    assert len(retries) == 1 and retries[0].state == optuna.trial.TrialState.COMPLETE
    assert retries[0].params == by_number[killed].params
    assert any(f"trial {retries[0].number}: started" in o and f"(retry of trial {killed}" in o for o in outputs)
    # Nothing counted twice: each failed trial has one retry, and the progress never went past the target.
    failed = [t for t in trials if t.state == optuna.trial.TrialState.FAIL]
    assert len(trials) == trials_wanted + len(failed)
    counts = [int(n) for o in outputs for n in re.findall(rf"\| (\d+)/{trials_wanted} done", o)]
    assert counts and max(counts) == trials_wanted
    # Both surviving workers worked on the one study, and the report lists the failed trial with its retry.
    assert all(re.search(r"trial \d+: started", o) for o in outputs)
    report = json.loads((tmp_path / "build" / "esp32" / "digits" / "explore" / "trials.json").read_text())
    rows = {r["number"]: r for r in report["trials"]}
    assert rows[killed]["state"] == "fail" and not rows[killed]["feasible"]
    assert rows[killed]["why"] == f"failed: its worker stopped; run again as trial {retries[0].number}"
    assert sum(r["state"] == "complete" for r in rows.values()) == trials_wanted
    assert report["storage"] == postgres_url  # no password in this URL; one would be hidden


def test_unreachable_postgres_is_one_line_without_the_password(tmp_path):
    from pipeline.hil.harness_build import free_tcp_port

    port = free_tcp_port()  # nobody listens there
    url = f"postgresql://me:s3cret@127.0.0.1:{port}/db"
    error = assert_clean_error(run_invoke("explore", "--trials=1", f"--storage={url}", f"--build-dir={tmp_path}"),
                               f"127.0.0.1:{port}/db", "--storage")
    assert "s3cret" not in error
    assert_clean_error(run_invoke("explore", "--heartbeat=0", f"--build-dir={tmp_path}"), "--heartbeat")


@pytest.mark.slow
def test_a_trial_left_running_without_a_heartbeat_is_run_again_on_resume(tmp_path):
    """A worker killed between taking its trial and its first heartbeat (or a study from before heartbeats) leaves a
    trial RUNNING with no heartbeat at all; the next worker must not wait for it forever, but fail and retry it."""
    import optuna

    storage = f"sqlite:///{tmp_path / 'study.sqlite3'}"
    study = optuna.create_study(study_name="digits@esp32", storage=storage,
                                directions=["maximize", "minimize", "minimize"])
    params = {"width": 0.25, "depth": 1, "prune": "none", "sparsity": 0.2, "qat": False, "distill": False,
              "precision": "int8"}
    study.enqueue_trial(params)
    assert study.ask().number == 0  # taken, then its worker is gone: RUNNING, never a heartbeat
    proc = run_invoke("explore", "--model=digits", "--board=esp32", "--trials=1", "--epochs=1", "--heartbeat=1",
                      f"--storage={storage}", f"--build-dir={tmp_path / 'build'}", timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "waiting for trial(s) 0 of other workers" in proc.stdout and "(retry of trial 0" in proc.stdout
    trials = optuna.load_study(study_name="digits@esp32", storage=storage).get_trials()
    assert [t.state for t in trials] == [optuna.trial.TrialState.FAIL, optuna.trial.TrialState.COMPLETE]
    assert trials[1].system_attrs["failed_trial"] == 0 and trials[1].params == params
