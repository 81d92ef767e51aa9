"""benchmarks/step_parts.py: a preset's variants, each one setting changed, timed beside the tutorial's loop."""

import importlib.util
import json

import pytest
from conftest import ROOT


def _script():
    spec = importlib.util.spec_from_file_location("step_parts", ROOT / "benchmarks" / "step_parts.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_variant_is_a_name_and_settings_read_as_literals():
    parse = _script().parse_variant
    assert parse("preset=") == ("preset", {})
    assert parse("plain=r1=0,r2=0,reg_every=1") == ("plain", {"r1": 0, "r2": 0, "reg_every": 1})
    assert parse("no-sn=spectral_norm=False,width=16") == ("no-sn", {"spectral_norm": False, "width": 16})


@pytest.mark.slow  # (three networks' steps traced and timed: a benchmark's run, not the suite's; CI runs it)
def test_each_variant_trains_its_own_recipe_beside_the_tutorials_loop(tmp_path, capsys):
    pytest.importorskip("tensorflow", reason="the tutorial's loop is TensorFlow code")
    out = tmp_path / "parts.json"
    assert _script().main(["--batch-size", "16", "--steps", "4", "--repeats", "1", "--precision", "float32",
                           "--json", str(out), "preset=", "w8=width=8", "b32=batch_size=32"]) == 0
    rows = {row["variant"]: row for row in json.loads(out.read_text())["rows"]}
    assert list(rows) == ["preset", "w8", "b32", "tutorial loop"] and rows["tutorial loop"]["ratio"] == 1.0
    assert "+w16+" in rows["preset"]["recipe"] and "+w8+" in rows["w8"]["recipe"]
    assert [row["batch_size"] for row in rows.values()] == [16, 16, 32, 16]
    assert all(row["images_per_s"] > 0 for row in rows.values())
    assert "w8" in capsys.readouterr().out
