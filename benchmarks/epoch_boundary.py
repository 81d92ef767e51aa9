"""The pause at the start of every epoch, with and without tf.data's autotuning of the step numbers, side by side.

Keras drops each epoch's tf.data iterator before the next epoch's first step and waits for the iterator's
threads; with autotuning on, its background thread took seconds to notice (py-spy: the main thread in
~IteratorResource, waiting on tf.data's UnboundedThreadPool). prendas.devices.step_numbers turns autotuning
off. This trains the same tiny runs alternately both ways in one process and prints the first step of each
epoch after the first, and the epochs' seconds.

    PYTHONPATH=. .venv/bin/python benchmarks/epoch_boundary.py [--images 12000] [--epochs 3] [--repeats 2] [--json F]
"""

import argparse
import json
import statistics
import tempfile
import time

import keras
import tensorflow as tf

from prendas import devices
from prendas.config import TrainConfig
from prendas.train import train

TUNED = devices.step_numbers


def autotuned(steps, model):
    """The step numbers as before: tf.data's default options (autotuning on)."""
    return tf.data.Dataset.range(steps).map(lambda step: tf.fill([devices.replicas(model)], step))


class FirstSteps(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.first, self.epochs = [], []

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._started = self._last = time.perf_counter()
        self._seen_first = False

    def on_train_batch_end(self, batch, logs=None):
        if not self._seen_first:
            self._seen_first = True
            if self._epoch > 0:  # (the first epoch's first step compiles)
                self.first.append(time.perf_counter() - self._started)

    def on_epoch_end(self, epoch, logs=None):
        if epoch > 0:
            self.epochs.append(time.perf_counter() - self._started)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=12_000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json")
    args = parser.parse_args()
    results = {"autotune on (before)": FirstSteps(), "autotune off (now)": FirstSteps()}
    for _ in range(args.repeats):
        for name, watch in results.items():
            devices.step_numbers = autotuned if name.startswith("autotune on") else TUNED
            with tempfile.TemporaryDirectory() as out:
                train(TrainConfig(epochs=args.epochs, images=args.images, out=out), callbacks=[watch], log=lambda line: None)
    devices.step_numbers = TUNED
    report = {"machine": devices.machine_name(), "images": args.images, "epochs": args.epochs, "repeats": args.repeats}
    for name, watch in results.items():
        report[name] = {"first_step_s": [round(s, 3) for s in watch.first], "epoch_s": [round(s, 2) for s in watch.epochs],
                        "median_first_step_s": round(statistics.median(watch.first), 3),
                        "mean_first_step_s": round(statistics.mean(watch.first), 3),
                        "mean_epoch_s": round(statistics.mean(watch.epochs), 2)}
        # (means: the pause comes at random, from nothing to many seconds, so medians hide it)
        print(f"{name:22}  first step of epochs 2+: mean {report[name]['mean_first_step_s']:.2f}s "
              f"{report[name]['first_step_s']}  epochs: mean {report[name]['mean_epoch_s']:.1f}s {report[name]['epoch_s']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
