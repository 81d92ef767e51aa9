"""benchmarks/time_to_quality.py: each measurement placed at the training minutes its epoch ended."""

import importlib.util

from conftest import ROOT


def _script():
    spec = importlib.util.spec_from_file_location("time_to_quality", ROOT / "benchmarks" / "time_to_quality.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _evaluation(epoch, fid, recall, coverage=0.3):
    return {"epoch": epoch, "n": 2000, "fid": fid, "precision": 0.8, "recall": recall, "coverage": coverage,
            "classes_over_5pct": 10}


RUN = {"data": {"images": 60_000}, "history": [{"epoch": e, "seconds": 600.0} for e in (1, 2, 3, 4)],
       "evaluations": [_evaluation(2, 1.0, 0.2), _evaluation(4, 0.25, 0.45, 0.5)]}


def test_minutes_from_the_runs_clock_or_from_a_speed(tmp_path):
    t = _script()
    assert [m for m, _ in t.curve(RUN)] == [20.0, 40.0]  # 10 minutes an epoch, measured at epochs 2 and 4
    assert [m for m, _ in t.curve(RUN, images_per_s=1000)] == [2.0, 4.0]  # 60,000 images at 1,000 a second
    points = t.curve(RUN)
    assert t.first_reached(points, "fid", 0.3) == 40.0 and t.first_reached(points, "recall", 0.2) == 20.0
    assert t.first_reached(points, "fid", 0.1) is None
    assert t.within(points, 30)[1]["epoch"] == 2 and t.within(points, 10) is None
    table = t.table([("a", t.within(points, 45)), ("b", None)], 45)
    assert "| a | 4 | 40.0 | 0.25 | 0.800 | 0.450 | 0.500 | 10 | - |" in table and "| b | no measurement within 45" in table
    run = tmp_path / "run.json"
    run.write_text(__import__("json").dumps(RUN))
    t.main([str(tmp_path / "out.png"), f"fast={run}@3000", f"slow={run}", "--minutes", "30"])
    assert (tmp_path / "out.png").stat().st_size > 1000
