"""`invoke hil --rig`: two devices measured at once, one of them failing mid-run, one aggregated result."""
import json
import xml.etree.ElementTree as ET

import pytest

from conftest import assert_clean_error, harness_args, run_invoke
from pipeline import boards
from pipeline.errors import PipelineError
from pipeline.hil import rig
from pipeline.hil.emulate import Serving, device_for_build
from pipeline.hil.harness_build import HostDevice


def test_rig_measures_two_devices_and_isolates_the_one_that_resets(host_harness, esp32_build, tmp_path):
    build_dir = esp32_build["build_dir"]
    emulated = device_for_build(build_dir, boards.load_board("esp32"), "digits")
    # the second device is the host harness, which reboots on its 9th command: the second timed infer
    resetting = HostDevice(host_harness, *harness_args(esp32_build["report"], 64, 10, "--reset-after", "9"))
    with Serving(emulated) as good_port, resetting as bad:
        (tmp_path / "rig.toml").write_text(f'''
[defaults]
runs = 3
inputs = 3
timeout = 2.0
flash = false
[[device]]
name = "emulated-1"
board = "esp32"
port = "{good_port}"
models = ["digits"]
min_accuracy = 50.0
[[device]]
name = "flaky-2"
board = "esp32"
port = "{bad.port}"
models = ["digits"]
''')
        proc = run_invoke("hil", f"--rig={tmp_path / 'rig.toml'}", f"--build-dir={build_dir}",
                          f"--out={tmp_path / 'out'}", f"--db={tmp_path / 'hil.sqlite'}")
    assert_clean_error(proc, "rig: 1 of 2 devices did not pass (flaky-2 error)")
    result = json.loads((tmp_path / "out" / "rig.json").read_text())
    assert result["devices"] == {"emulated-1": "pass", "flaky-2": "error"}
    good = {r["metric"]: r for r in result["rows"] if r["device"] == "emulated-1"}
    assert good["latency"]["status"] == "pass" and good["latency"]["source"] == "emulated"
    assert good["accuracy"]["status"] == "pass" and good["bit_exact"]["value"] == 3
    assert good["energy"]["status"] == "skipped"  # no energy from an emulated latency
    bad = [r for r in result["rows"] if r["device"] == "flaky-2"]
    assert len(bad) == 4 and all(r["status"] == "error" and "rebooted during 'infer 1 0'" in r["message"] for r in bad)
    kept = [json.loads(l) for l in (tmp_path / "out" / "flaky-2" / "digits" / "runs.jsonl").read_text().splitlines()]
    assert [r["kind"] for r in kept] == ["latency", "fault"]  # the run before the reset is kept
    suites = ET.parse(tmp_path / "out" / "rig-junit.xml").getroot()
    counts = {s.get("name"): (int(s.get("tests")), int(s.get("errors")), int(s.get("failures"))) for s in suites}
    assert counts == {"rig emulated-1": (4, 0, 0), "rig flaky-2": (4, 4, 0)}
    assert len((tmp_path / "out" / "rig.csv").read_text().splitlines()) == 1 + 8
    assert "| flaky-2 | esp32 | digits | latency | error |" in (tmp_path / "out" / "rig.md").read_text()
    assert "[emulated-1]" in proc.stdout and "[flaky-2]" in proc.stdout  # progress, per device


def test_judge_fails_a_metric_over_its_limit_and_keeps_regressions():
    device = rig.RigDevice("d", boards.load_board("esp32"), ["m"],
                           settings={"max_latency_us": 100.0, "min_accuracy": 90.0})
    result = {"source": "device", "latency_us": {"median": 150.0}, "energy_uj": 3.0, "energy_source": "estimate",
              "accuracy": 95.0, "bit_exact": 19, "inputs_checked": 20, "reference": "host TFLM",
              "regressions": ["energy per inference 3.0 vs baseline 2.0 (+50.0%, allowed 10.0%)"]}
    rows = {r["metric"]: r for r in rig.judge(device, "m", result)}
    assert rows["latency"]["status"] == "fail" and "over the limit 100.0 us" in rows["latency"]["message"]
    assert rows["energy"]["status"] == "fail" and "vs baseline" in rows["energy"]["message"]
    assert rows["accuracy"]["status"] == "pass"
    assert rows["bit_exact"]["status"] == "fail" and "19 of 20" in rows["bit_exact"]["message"]


@pytest.mark.parametrize("text, fragment", [
    ("", "no [[device]] entries"),
    ('[[device]]\nboard = "esp32"\nmodels = ["digits"]\n', "device 1: missing 'name'"),
    ('[[device]]\nname = "a"\nboard = "esp33"\nmodels = ["digits"]\n', "device 'a': unknown board 'esp33'"),
    ('[[device]]\nname = "a"\nboard = "esp32"\nmodels = []\n', "'models' must be a non-empty list"),
    ('[[device]]\nname = "a"\nboard = "esp32"\nmodels = ["d"]\nport = "/dev/x"\nusb = "1:2"\n', "give one of port"),
    ('[[device]]\nname = "a"\nboard = "esp32"\nmodels = ["d"]\n[[device]]\nname = "a"\nboard = "esp32"\n'
     'models = ["d"]\n', "the name is used twice"),
    ('[defaults]\nruns = -1\n[[device]]\nname = "a"\nboard = "esp32"\nmodels = ["d"]\n', "'runs' must be a whole"),
    ('[[device]]\nname = "a"\nboard = "esp32"\nmodels = ["d"]\nmax_latency = 5\n', "unknown field 'max_latency'"),
    ('[[device]\n', "not valid TOML"),
])
def test_bad_rig_file_is_refused_in_one_line(tmp_path, text, fragment):
    path = tmp_path / "rig.toml"
    path.write_text(text)
    with pytest.raises(PipelineError, match=None) as exc:
        rig.load_rig(path)
    assert fragment in str(exc.value) and "\n" not in str(exc.value)


def test_bad_rig_file_from_the_command_line(tmp_path):
    assert_clean_error(run_invoke("hil", f"--rig={tmp_path / 'none.toml'}"), "rig file", "does not exist")
