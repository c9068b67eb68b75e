"""invoke explore: a real Optuna study on a real SQLite file, resumed, shared by two workers, its pick built, and its
HTML report rendered in headless Chromium."""
import json
import shutil
import subprocess
import sys

import pytest

from conftest import REPO, assert_clean_error, run_invoke


def _explore(build_dir, *args, trials=3):
    return run_invoke("explore", "--model=digits", "--board=esp32", f"--trials={trials}", "--epochs=2",
                      f"--build-dir={build_dir}", *args)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    build_dir = tmp_path_factory.mktemp("explore")
    proc = _explore(build_dir)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return {"dir": build_dir, "out": build_dir / "esp32" / "digits" / "explore", "proc": proc}


def test_study_writes_consistent_files(study):
    out = study["out"]
    for name in ("trials.json", "trials.csv", "pareto.json", "pareto.png", "report.html", "study.sqlite3"):
        assert (out / name).is_file(), name
    trials = json.loads((out / "trials.json").read_text())["trials"]
    assert len(trials) == 3 and [t["number"] for t in trials] == [0, 1, 2]
    assert len((out / "trials.csv").read_text().strip().splitlines()) == 4
    pareto = json.loads((out / "pareto.json").read_text())
    feasible = [t for t in trials if t["feasible"]]
    assert {p["number"] for p in pareto["pareto"]} <= {t["number"] for t in feasible}
    best = pareto["best"]  # the most accurate feasible trial that firmware can be built for (int8)
    buildable = [t for t in feasible if t["params"]["precision"] == "int8"]
    assert best["metrics"]["accuracy"] == max(t["metrics"]["accuracy"] for t in buildable)
    for t in feasible:  # each trial's figures are those of its own model on the board
        m = t["metrics"]
        assert m["ram_kb"] <= m["ram_budget_kb"] and m["flash_kb"] <= m["flash_budget_kb"]
        if t in buildable:
            assert 0 < m["latency_ms"] and m["host_only"] is None
            assert m["energy_uj"] == pytest.approx(165.0 * m["latency_ms"], rel=1e-6)  # esp32 active_mw x latency
        else:  # int16x8: no cost model for its kernels, so no latency or energy estimate, and off the front
            assert m["latency_ms"] is None and m["energy_uj"] is None and "host only, not buildable" in m["host_only"]
    assert all(p["params"]["precision"] == "int8" for p in pareto["pareto"])
    assert not any(key.startswith("sampler_") for t in trials for key in (t["metrics"] or {}))
    assert "trial 2:" in study["proc"].stdout and "ETA" in study["proc"].stdout and "best feasible" in study["proc"].stdout
    assert (out / "pareto.png").read_bytes()[:4] == b"\x89PNG"


def test_resumed_study_continues_instead_of_restarting(study, tmp_path):
    build_dir = tmp_path / "b"
    shutil.copytree(study["dir"], build_dir)
    proc = _explore(build_dir, trials=4)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "resuming study digits@esp32 (3 of 4 trials done)" in proc.stdout
    trials = json.loads((build_dir / "esp32" / "digits" / "explore" / "trials.json").read_text())["trials"]
    before = json.loads((study["out"] / "trials.json").read_text())["trials"]
    assert len(trials) == 4 and trials[:3] == before  # the first three are kept as they were


def test_limits_mark_trials_infeasible_with_the_reason(study, tmp_path):
    build_dir = tmp_path / "b"
    shutil.copytree(study["dir"], build_dir)
    proc = _explore(build_dir, "--max-latency-ms=0.001", "--max-ram-kb=30")
    assert proc.returncode == 0, proc.stderr[-2000:]
    trials = json.loads((build_dir / "esp32" / "digits" / "explore" / "trials.json").read_text())["trials"]
    assert trials and all(not t["feasible"] for t in trials)
    assert all(("ms of latency over the limit" in t["why"] or t["params"]["precision"] != "int8" and
                "no latency estimate (host only, not buildable)" in t["why"]) and "KiB of RAM" in t["why"]
               for t in trials)
    assert "no feasible trial" in proc.stdout


def test_build_from_explore_builds_the_pick(study, tmp_path):
    build_dir = tmp_path / "b"
    shutil.copytree(study["dir"], build_dir)
    best = json.loads((study["out"] / "pareto.json").read_text())["best"]
    proc = run_invoke("build", "--board=esp32", "--model=digits", "--from-explore=best", "--epochs=2",
                      f"--build-dir={build_dir}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((build_dir / "esp32" / "digits" / "report.json").read_text())
    assert f"building explored trial #{best['number']}" in proc.stdout
    assert report["tflite_bytes"] == best["metrics"]["tflite_bytes"]  # the very model the study measured
    assert report["tflm_metric"] == best["metrics"]["accuracy"]
    assert_clean_error(run_invoke("build", "--from-explore=99", "--epochs=2", f"--build-dir={build_dir}"),
                       "--from-explore=99")


def test_measure_puts_emulated_figures_beside_the_estimates(study, tmp_path):
    build_dir = tmp_path / "b"
    shutil.copytree(study["dir"], build_dir)
    proc = _explore(build_dir, "--measure=emulate")
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = build_dir / "esp32" / "digits" / "explore"
    front = json.loads((out / "pareto.json").read_text())["pareto"]
    for row in front:
        measured = json.loads((out / "trials.json").read_text())["trials"][row["number"]].get("measured")
        if row["params"]["precision"] == "int8":
            assert measured["source"] == "emulated"  # labelled by where it came from
            assert measured["latency_ms"] == pytest.approx(row["metrics"]["latency_ms"], abs=0.01)
            assert (out / "measure" / f"trial-{row['number']}" / "measure" / "results.json").is_file()
        else:
            assert "no firmware" in measured["skipped"]
    assert not (build_dir / "esp32" / "digits" / "report.json").exists()  # the user's own build is left alone


def test_bad_explore_options_are_one_line(tmp_path):
    assert_clean_error(run_invoke("explore", "--objectives=latency,ram", f"--build-dir={tmp_path}"), "--objectives")
    assert_clean_error(run_invoke("explore", "--trials=0", f"--build-dir={tmp_path}"), "--trials")
    assert_clean_error(run_invoke("explore", "--max-ram-kb=-3", f"--build-dir={tmp_path}"), "--max-ram-kb")


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Debian's chromium (.ci/run installs it)")
def test_report_renders_in_headless_chromium(study, tmp_path):
    report = study["out"] / "report.html"
    shot = tmp_path / "report.png"
    base = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--allow-file-access-from-files"]
    dom = subprocess.run(base + ["--dump-dom", report.as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert "Which digits to deploy on esp32" in dom.stdout and "Pareto front" in dom.stdout
    assert 'id="pick"' in dom.stdout and "data:image/png;base64," in dom.stdout  # self-contained: no server, no files
    proc = subprocess.run(base + [f"--screenshot={shot}", "--window-size=1400,1800", report.as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and shot.read_bytes()[:4] == b"\x89PNG", proc.stderr[-2000:]


@pytest.mark.slow
def test_two_workers_share_one_sqlite_study(study, tmp_path):
    build_dir = tmp_path / "b"
    shutil.copytree(study["dir"], build_dir)
    storage = f"sqlite:///{tmp_path / 'shared.sqlite3'}"
    command = [sys.executable, "-m", "invoke", "explore", "--model=digits", "--board=esp32", "--trials=4",
               "--epochs=2", f"--storage={storage}", f"--build-dir={build_dir}"]
    workers = [subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for _ in range(2)]
    outputs = [w.communicate(timeout=900) for w in workers]
    assert all(w.returncode == 0 for w in workers), [o[1][-1500:] for o in outputs]
    import optuna

    trials = optuna.load_study(study_name="digits@esp32", storage=storage).get_trials()
    # A worker takes a trial only while the study needs one (under the lock beside the SQLite file): exactly 4.
    assert len(trials) == 4 and all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert (tmp_path / "shared.sqlite3.lock").is_file()
    assert all("trial " in o[0] for o in outputs)  # both workers ran trials of the one study


def test_audio_data_adds_the_front_ends_settings_to_the_search(tmp_path):
    """Cheap: the sampler's choices for a keyword model on audio, and how a trial carries them into its build."""
    import optuna

    from pipeline import explore
    from pipeline.model import zoo
    from pipeline.target import frontend

    spec = zoo.get_spec("ds_cnn")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(40):
        params = explore.sample(study.ask(), spec, audio=True)
        chosen = frontend.parse(params["frontend"])
        assert chosen.feature_shape == (49, 10)  # every choice feeds the same model input
        seen.add((chosen.stride_ms, chosen.mel_channels))
        assert f"front end {params['frontend']}" in explore.describe(params)
    assert seen == {(s, m) for s in explore.FRONTEND_SPACE["stride_ms"] for m in explore.FRONTEND_SPACE["mel_channels"]}
    assert "frontend" not in explore.sample(study.ask(), spec, audio=False)
    opts = explore.ExploreOptions(model="ds_cnn", data=str(tmp_path), build_root=tmp_path)
    assert explore.pipeline_options(opts, {**params, "frontend": "stride_ms=20"}).frontend == "stride_ms=20"
    # the front end's estimated cost follows its settings: half the frames at a 20 ms stride
    ten, twenty = (frontend.estimated_cycles(frontend.parse(t))["ops"] for t in ("default", "stride_ms=20"))
    assert 0.45 < twenty / ten < 0.55
