"""What explore's pareto.png draws, read back from the matplotlib figure: int16x8 trials are marked host only and kept
off the buildable front, the legend lists only what is drawn, the RAM and flash panels are zoomed to the points with
an off-scale budget marked by a note, and a teacher reads as its width."""
from pipeline import boards, explore


def _row(number, precision="int8", accuracy=95.0, latency=2.0, ram=20.0, flash=300.0, teacher=None):
    params = {"width": 0.5, "depth": 2, "prune": "none", "sparsity": 0.0, "qat": True, "teacher": teacher,
              "precision": precision}
    opts = explore.ExploreOptions()
    board = boards.load_board("esp32")
    metrics = {"metric_name": "accuracy", "accuracy": accuracy, "float_metric": accuracy + 0.5,
               "latency_ms": latency if precision == "int8" else None,
               "energy_uj": 165.0 * latency if precision == "int8" else None,
               "host_only": None if precision == "int8" else f"{precision}: {explore.HOST_ONLY}",
               "ram_kb": ram, "flash_kb": flash, "arena_bytes": 4000, "tflite_bytes": 9000, "macs": 10000,
               "fits_board": True, "ram_budget_kb": board.ram_bytes / 1024, "flash_budget_kb": board.flash_bytes / 1024}
    why = "; ".join(explore.why_infeasible(explore.violations(opts, metrics)))
    return {"number": number, "state": "complete", "params": params, "metrics": metrics, "feasible": not why,
            "why": why or None}


def _legends(fig):
    return [[t.get_text() for t in ax.get_legend().get_texts()] for ax in fig.axes]


def test_int16x8_trials_are_host_only_and_off_the_front():
    opts, board = explore.ExploreOptions(), boards.load_board("esp32")
    rows = [_row(0, accuracy=95.0, latency=3.0), _row(1, "int16x8", accuracy=97.0, latency=3.0),
            _row(2, accuracy=93.0, latency=1.0, ram=18.0, teacher="2")]
    front = explore.pareto(rows, opts.objectives)
    assert [r["number"] for r in front] == [2, 0]  # the int16x8 trial, more accurate at the same size, is not on it
    fig = explore._figure(opts, board, rows, front, explore.pick(rows, "best"))
    latency, ram, flash = _legends(fig)
    assert "infeasible" not in latency + ram + flash  # every trial is feasible
    assert f"int16x8: {explore.HOST_ONLY}" in ram and f"int16x8: {explore.HOST_ONLY}" in flash
    assert not any("int16x8" in label for label in latency)  # it has no latency estimate to place
    assert [t.get_text() for t in fig.axes[0].texts if "not shown" in t.get_text()] == \
        [f"1 trial(s) not shown: {explore.HOST_ONLY}, no estimate"]
    latency_points = [tuple(p) for c in fig.axes[0].collections for p in c.get_offsets()]
    assert (3.0, 97.0) not in latency_points
    assert "teacher width 2.0" in explore.describe(rows[2]["params"])
    html = explore._html(opts, board, rows, front, explore.pick(rows, "best"), b"")
    assert "<td>teacher width 2.0</td>" in html and f"yes, but {explore.HOST_ONLY}" in html


def test_ram_and_flash_panels_zoom_to_the_points_and_note_an_off_scale_budget():
    opts, board = explore.ExploreOptions(), boards.load_board("esp32")  # 320 KiB RAM, 3 MiB flash
    rows = [_row(0, ram=20.0, flash=300.0), _row(1, ram=30.0, flash=340.0, accuracy=96.0, latency=4.0)]
    front = explore.pareto(rows, opts.objectives)
    fig = explore._figure(opts, board, rows, front, None)
    for ax, budget, points in ((fig.axes[1], board.ram_bytes / 1024, (20.0, 30.0)),
                               (fig.axes[2], board.flash_bytes / 1024, (300.0, 340.0))):
        lo, hi = ax.get_xlim()
        assert lo < points[0] and points[1] < hi and hi < budget  # zoomed to the points
        assert hi - lo < 2 * (points[1] - points[0])
        notes = [t.get_text() for t in ax.texts if t.get_text().startswith("budget")]
        assert notes == [f"budget {budget:g} KiB →"]
        assert not any(label.startswith("budget") for label in ax.get_legend_handles_labels()[1])
    # a budget close to the points is drawn as a line, inside the view
    near = explore.ExploreOptions(max_ram_kb=40.0)
    fig = explore._figure(near, board, rows, front, None)
    assert "budget 40 KiB" in fig.axes[1].get_legend_handles_labels()[1]
    assert fig.axes[1].get_xlim()[1] > 40.0


def test_a_latency_limit_holds_no_host_only_trial_feasible():
    host_only = _row(0, "int16x8")["metrics"]
    why = explore.why_infeasible(explore.violations(explore.ExploreOptions(max_latency_ms=5.0), host_only))
    assert why == [f"no latency estimate ({explore.HOST_ONLY}) to hold to the latency limit"]
    assert explore.why_infeasible(explore.violations(explore.ExploreOptions(), host_only)) == []
