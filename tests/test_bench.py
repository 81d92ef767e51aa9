"""The benchmark (issue 6): FLOPs counted from the layers against known answers, and a tiny real run
of both loops whose figures hang together. Its speed figures belong in docs/speed.md, not in asserts."""

import json

import keras
import pytest
from conftest import run_cli

from prendas import bench
from prendas.bench import alternate, forward_flops, run_benchmark, step_flops
from prendas.models import build_discriminator, build_generator


def test_flops_of_known_layers():
    model = keras.Sequential([
        keras.Input((4, 4, 1)),
        keras.layers.Conv2D(2, 3, padding="same"),  # 16 output pixels x 3x3x1x2 = 288 multiply-adds
        keras.layers.Conv2DTranspose(1, 2, strides=2, padding="same"),  # 16 input pixels x 2x2x2x1 = 128
        keras.layers.Flatten(),
        keras.layers.Dense(3),  # 64 x 3 = 192
    ])
    assert forward_flops(model) == 2 * (288 + 128 + 192)


def test_flops_of_the_tutorial_dcgan_match_the_hand_count():
    # Issue 6's figures: generator 103.5 MFLOP forward, discriminator 20.7 MFLOP, about 0.45 GFLOP a training step.
    generator, discriminator = build_generator(100), build_discriminator()
    assert forward_flops(generator) == pytest.approx(103.5e6, rel=0.001)
    assert forward_flops(discriminator) == pytest.approx(20.7e6, rel=0.001)
    assert step_flops(generator, discriminator) == pytest.approx(0.435e9, rel=0.01)
    # spectral normalization wraps the same layers: the same count
    assert forward_flops(build_discriminator(spectral_norm=True)) == forward_flops(discriminator)
    assert forward_flops(build_generator(100, arch="deep")) > 4 * forward_flops(generator)


def test_alternate_times_each_side_in_turn_at_its_own_batch(monkeypatch):
    # A clock that moves only when a side trains: each step takes one second, whatever its batch, so a side's
    # images/s is its batch size; the warm-up runs are not timed.
    clock, order = [0.0], []

    class Side:
        def __init__(self, name):
            self.name = name

        def run(self, steps):
            order.append(self.name)
            clock[0] += steps

    monkeypatch.setattr(bench.time, "perf_counter", lambda: clock[0])
    sides = {"small": Side("small"), "big": Side("big")}
    assert alternate(sides, 4, 2, {"small": 16, "big": 64}) == {"small": [16.0, 16.0], "big": [64.0, 64.0]}
    assert order == ["small", "big"] * 3
    assert alternate(sides, 4, 1, 32) == {"small": [32.0], "big": [32.0]}


def test_a_tiny_benchmark_reports_both_loops_and_their_ratio():
    lines = []
    r = run_benchmark(batch_size=16, steps=2, repeats=2, steps_per_execution=2, log=lines.append)
    assert r["project_images_per_s"] > 0 and r["baseline_images_per_s"] > 0
    assert r["ratio"] == pytest.approx(r["project_images_per_s"] / r["baseline_images_per_s"], rel=0.01)
    assert len(r["project_runs"]) == len(r["baseline_runs"]) == 2
    assert r["project_flops_per_s"] == pytest.approx(r["project_images_per_s"] * r["flops_per_image"], rel=0.01)
    assert r["memory"]["process_peak_rss_bytes"] > 100 * 2**20
    assert "ratio project / baseline" in lines[0] and r["machine"] in lines[0]


def test_bench_command_writes_json_and_refuses_mistakes(tmp_path):
    out = tmp_path / "bench.json"
    result = run_cli("bench", "--batch-size", 16, "--steps", 1, "--repeats", 1, "--json", out)
    assert result.returncode == 0, result.stderr
    saved = json.loads(out.read_text())
    assert {"project_images_per_s", "baseline_images_per_s", "ratio", "machine", "backend"} <= set(saved)
    bad = run_cli("bench", "--steps", 3, "--steps-per-execution", 2)
    assert bad.returncode == 2 and "multiple of --steps-per-execution" in bad.stderr and "Traceback" not in bad.stderr
