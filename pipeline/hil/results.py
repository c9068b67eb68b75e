"""Result files: every run appended to a JSONL log as it completes (an interrupted measurement loses nothing),
then results.json, results.csv and summary.md; a baseline check; JUnit XML for CI rigs."""
from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from pipeline.cache import write_atomic
from pipeline.errors import PipelineError


class RunLog:
    """Append-only JSON lines, flushed to disk after every record."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._file = open(path, "a", encoding="utf-8")

    def append(self, record: dict) -> None:
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()


def write_summaries(result: dict, out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(out_dir / "results.json", json.dumps(result, indent=2))
    buf = io.StringIO()
    fields = ["run", "iterations", "latency_us", "energy_uj", "energy_source", "source"]
    writer = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    for run in result["runs"]:
        writer.writerow(run)
    write_atomic(out_dir / "results.csv", buf.getvalue())
    write_atomic(out_dir / "summary.md", markdown(result))
    return [out_dir / n for n in ("results.json", "results.csv", "summary.md")]


def markdown(result: dict) -> str:
    lat = result["latency_us"]
    source = result["source"]
    rows = [
        f"# {result['model']} on {result['board']} ({source})",
        "",
        "| figure | value |",
        "| --- | --- |",
        f"| latency median ({source}) | {lat['median']:.1f} us |",
        f"| latency mean / p90 | {lat['mean']:.1f} / {lat['p90']:.1f} us |",
        f"| latency min / max / std | {lat['min']:.1f} / {lat['max']:.1f} / {lat['std']:.1f} us |",
        f"| throughput | {result['throughput_ips']:.1f} inferences/s |",
    ]
    if result.get("energy_uj") is not None:
        rows.append(f"| energy per inference ({result['energy_source']}) | {result['energy_uj']:.2f} uJ |")
    if result.get("accuracy") is not None:
        rows.append(f"| on-target accuracy | {result['accuracy']:.2f} % over {result['inputs_checked']} inputs |")
    if result["bit_exact"] is None:
        rows.append("| raw outputs | not checked (no xraw extension in the firmware) |")
    else:
        rows.append(f"| raw outputs equal to {result['reference']} | {result['bit_exact']} of {result['inputs_checked']} |")
    rows.append(f"| device | {result['device'].get('backend', '?')} backend, model hash {result['device'].get('model_hash', '?')} |")
    return "\n".join(rows) + "\n"


def baseline_note(result: dict, baseline_path: Path) -> str | None:
    """One line when the baseline results.json is of another model (another model hash) than this run."""
    try:
        baseline = json.loads(Path(baseline_path).read_text())
    except (OSError, json.JSONDecodeError):
        return None  # regressions() names the unreadable file
    before = (baseline.get("device") or {}).get("model_hash")
    now = result["device"].get("model_hash")
    if before and now and before != now:
        return (f"baseline {baseline_path} is of another model ({baseline.get('model')} hash {before}) than this run "
                f"({result['model']} hash {now}): the comparison is between two different models")
    return None


def read_baseline(baseline_path: Path) -> dict:
    """A previous results.json, or one line saying why it cannot be one (checked before anything is measured)."""
    try:
        baseline = json.loads(Path(baseline_path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise PipelineError(f"--baseline={baseline_path} is not a readable results.json ({reason}): give a "
                            "results.json of an earlier `invoke measure`, or history:N") from None
    if not isinstance(baseline, dict) or not isinstance(baseline.get("latency_us"), dict) \
            or "median" not in baseline["latency_us"]:
        raise PipelineError(f"--baseline={baseline_path} is not a results.json of `invoke measure` (it has no "
                            "latency_us.median)")
    return baseline


def regressions(result: dict, baseline_path: Path, max_regression_pct: float) -> list[str]:
    """Figures that got worse than the baseline's by more than max_regression_pct."""
    baseline = read_baseline(baseline_path)
    found = []
    pairs = [("latency median", result["latency_us"]["median"], baseline.get("latency_us", {}).get("median"))]
    if result.get("energy_uj") is not None:
        pairs.append(("energy per inference", result["energy_uj"], baseline.get("energy_uj")))
    for name, now, before in pairs:
        if before:
            change = (now - before) / before * 100.0
            if change > max_regression_pct:
                found.append(f"{name} {now:.1f} vs baseline {before:.1f} (+{change:.1f}%, allowed {max_regression_pct}%)")
    return found


def write_junit(result: dict, failures: list[str], path: Path) -> None:
    name = f"{result['model']}@{result['board']}"
    cases = [("latency", [f for f in failures if f.startswith("latency")]),
             ("energy", [f for f in failures if f.startswith("energy")]),
             ("bit_exact", [] if result["bit_exact"] in (None, result["inputs_checked"]) else
              [f"{result['bit_exact']} of {result['inputs_checked']} raw outputs equal to {result['reference']}"])]
    body = []
    for case, problems in cases:
        inner = "".join(f"<failure message={quoteattr(p)}>{escape(p)}</failure>" for p in problems)
        body.append(f'  <testcase classname={quoteattr(name)} name="{case}">{inner}</testcase>')
    failed = sum(1 for _, p in cases if p)
    xml = (f'<?xml version="1.0" encoding="UTF-8"?>\n<testsuite name={quoteattr("mcu-deploy measure " + name)} '
           f'tests="{len(cases)}" failures="{failed}">\n' + "\n".join(body) + "\n</testsuite>\n")
    write_atomic(Path(path), xml)
