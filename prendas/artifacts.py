"""What a run leaves on disk: tags and file names, atomic writes, images, checkpoints, saved models.

Every file is written under a temporary name in its own folder and then renamed over the real
name, so a run killed at any moment leaves either the old file or the new one, never half of one.
"""

import contextlib
import datetime
import json
import os
import re
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from prendas import PrendasError

CHECKPOINT_FORMAT = "prendas-checkpoint"
CHECKPOINT_VERSION = 1
CHECKPOINT_KEYS = {"config", "epochs_done", "segments", "history", "training_seconds"}  # what resume() reads
GRID_SCALE = 3  # grids are scaled up (nearest neighbour) so 28-pixel garments can be seen


# ---- names ---------------------------------------------------------------------------------


def run_tag(segments, n_images, when=None):
    """'YYYY-MM-DD-HHMM_{E}ep_{N}imgs'; a resumed run's epochs read like '50+175'."""
    when = when or datetime.datetime.now()
    epochs = "+".join(str(e) for e in segments)
    return f"{when:%Y-%m-%d-%H%M}_{epochs}ep_{n_images}imgs"


def run_paths(out, tag, ema=False, evaluations=False):
    """Every file a run writes, by name; an --ema run also saves its raw weights, an evaluated one its curve."""
    out = Path(out)
    models, images = out / "models", out / "images"
    paths = {
        "generator": models / f"generator_{tag}.keras",
        "discriminator": models / f"discriminator_{tag}.keras",
        "run_json": models / f"run_{tag}.json",
        "checkpoint": out / "checkpoints" / f"checkpoint_{tag}.npz",
        "grid": images / f"grid_{tag}.png",
        "progress_gif": images / f"progress_{tag}.gif",
    }
    for i in range(5):
        paths[f"image_{i}"] = images / f"image_{i}_{tag}.png"
    if ema:
        paths["generator_raw"] = models / f"generator_raw_{tag}.keras"
    if evaluations:  # the quality curve, and the best generator so far with its evaluation and checkpoint
        paths["quality_curve"] = images / f"quality_{tag}.png"
        paths["generator_best"] = models / f"generator_best_{tag}.keras"
        paths["evaluation_best"] = models / f"evaluation_best_{tag}.json"
        paths["checkpoint_best"] = out / "checkpoints" / f"checkpoint_best_{tag}.npz"
    return paths


def model_tag(model_path):
    """The TAG of generator_TAG.keras, of an --ema run's generator_raw_TAG.keras or of a run's best so far,
    generator_best_TAG.keras; None for another name."""
    name = Path(model_path).stem
    if not name.startswith("generator_"):
        return None
    name = name.removeprefix("generator_")
    return name.removeprefix("raw_").removeprefix("best_")


def run_records(folder):
    """(tag, path) of every run's record under a folder (its models/run_TAG.json files), in order."""
    return [(path.stem.removeprefix("run_"), path) for path in sorted(Path(folder).glob("**/models/run_*.json"))]


def evaluation_path(model_path, epoch=None):
    """Where `prendas evaluate` writes a generator's scores: evaluation_TAG.json (evaluation_raw_TAG.json) beside it;
    for a checkpoint (rewritten as its run goes on), evaluation_checkpoint_TAG_epochE.json beside it."""
    path = Path(model_path)
    if path.suffix == ".npz":
        return path.with_name(f"evaluation_{path.stem}_epoch{epoch}.json")
    return path.with_name("evaluation_" + path.stem.removeprefix("generator_") + ".json")


def claim_tag(out, tag):
    """The tag, or tag_2, tag_3, ... when a run in the same minute already used it, claimed for this run.

    The claim is the run's record, OUT/models/run_TAG.json, created exclusively (status "starting"): of two
    runs started at once in one folder, each gets a tag of its own. Raises PrendasError if it cannot be made.
    """
    candidate, n = tag, 1
    while True:
        paths = run_paths(out, candidate, ema=True, evaluations=True)
        # (and not the TensorBoard folder of a run that --minutes tagged anew: it logs on under its first tag)
        if not any(p.exists() for p in paths.values()) and not (Path(out) / "logs" / candidate).exists():
            try:
                paths["run_json"].parent.mkdir(parents=True, exist_ok=True)
                with open(paths["run_json"], "x") as f:  # (exclusive: fails if another run created it first)
                    f.write(json.dumps({"tag": candidate, "status": "starting", "pid": os.getpid()}) + "\n")
                return candidate
            except FileExistsError:
                pass
            except OSError as e:
                raise PrendasError(f"could not write {paths['run_json']}: {e.strerror or e}") from None
        n += 1
        candidate = f"{tag}_{n}"


# ---- atomic writing ------------------------------------------------------------------------


def check_writable(folder, flag):
    """Fail now, before any work, if files cannot be written under `folder` (made if missing).

    The nearest folder that exists is tried with a temporary file (removed at once), which catches what
    permission bits do not (/proc, a read-only mount); nothing is left behind.
    """
    existing = Path(folder).absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise PrendasError(f"cannot write under {folder} ({flag}): {existing} is a file, not a writable folder")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as e:
        raise PrendasError(f"cannot write under {folder} ({flag}): cannot create files in {existing} "
                           f"({e.strerror or e})") from None


@contextlib.contextmanager
def atomic_path(path, temporary=None):
    """Yield a temporary path beside `path` (same suffix; or named `temporary`); rename it over `path` if the
    block succeeds.

    A write the system refuses (a full disk, no permission) raises PrendasError naming the file and the
    reason; the previous `path`, if any, is untouched, and the temporary file is removed.
    """
    path = Path(path)
    tmp = path.with_name(temporary or f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        raise PrendasError(f"could not write {path}: {e.strerror or e} (the previous file, if any, is intact)") from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


TEMPORARY = re.compile(r"^\.(.+)\.(\d+)\.tmp(\.[a-z]+)$")  # atomic_path's names: .STEM.PID.tmp.SUFFIX


def remove_leftovers(out, log=print):
    """Remove what a killed run left under OUT: temporary files in models/, images/ and checkpoints/, and
    the record of a run killed before its first epoch (status "starting").

    Only atomic_path's own names of the files a run writes (checked against run_paths), and only those
    whose process is gone: a run writing in the same folder right now keeps its files.
    """
    removed = []
    for folder in ("models", "images", "checkpoints"):
        for path in sorted((Path(out) / folder).glob(".*.tmp.*")):
            match = TEMPORARY.match(path.name)
            if not match or not _ours(folder, match[1] + match[3]) or _alive(int(match[2])):
                continue
            with contextlib.suppress(OSError):
                path.unlink()
                removed.append(path)
    for path in sorted((Path(out) / "models").glob("run_*.json")):  # tags claimed by runs killed before their first epoch
        with contextlib.suppress(OSError, ValueError, AttributeError):
            record = json.loads(path.read_text())
            if record.get("status") == "starting" and set(record) == {"tag", "status", "pid"} and not _alive(record["pid"]):
                path.unlink()
                removed.append(path)
    if removed:
        log(f"removed {len(removed)} file{'s' if len(removed) > 1 else ''} left by stopped runs: "
            + ", ".join(str(p) for p in removed))
    return removed


def _ours(folder, name):
    """Whether `name` in `folder` is a file name some run writes (whatever its tag)."""
    for template in run_paths(".", "TAG", ema=True, evaluations=True).values():
        stem, _, suffix = template.name.partition("TAG")
        if template.parent.name == folder and name.startswith(stem) and name.endswith(suffix):
            return True
    return folder == "models" and name.startswith("evaluation_") and name.endswith(".json")


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def write_text(path, text):
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path, data):
    write_text(path, json.dumps(data, indent=2) + "\n")


def copy_file(source, path):
    """A copy of `source` at `path`, written as every file is (a temporary name, then renamed)."""
    import shutil

    with atomic_path(path) as tmp:
        shutil.copyfile(source, tmp)


def save_model(model, path):
    with atomic_path(path) as tmp:
        model.save(tmp)


# ---- images --------------------------------------------------------------------------------


def image_grid(images, cols=None, pad=2, scale=GRID_SCALE):
    """uint8 images (N, 28, 28) -> one uint8 picture, `cols` per row (default: near square)."""
    n, h, w = images.shape
    cols = cols or int(np.ceil(np.sqrt(n)))
    rows = -(-n // cols)
    grid = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad), 255, np.uint8)
    for i, image in enumerate(images):
        r, c = divmod(i, cols)
        grid[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + c * (w + pad) : pad + c * (w + pad) + w] = image
    return np.kron(grid, np.ones((scale, scale), np.uint8))


def png_bytes(pixels):
    """uint8 grayscale pixels (H, W) as the bytes of a PNG file."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.asarray(pixels, np.uint8), mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def save_png(pixels, path):
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(png_bytes(pixels))


def figure_png(fig):
    """A Matplotlib figure as the bytes of a PNG file (for files, and inline in the notebook)."""
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg

    buffer = io.BytesIO()
    FigureCanvasAgg(fig).print_png(buffer)
    return buffer.getvalue()


def save_figure(fig, path):
    """A Matplotlib figure as PNG."""
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(figure_png(fig))


def save_gif(frames, path, ms_per_frame=200):
    """An animation of uint8 frames; the last frame is held for two seconds."""
    from PIL import Image

    pictures = [Image.fromarray(f, mode="L") for f in frames]
    durations = [ms_per_frame] * (len(pictures) - 1) + [2000]
    with atomic_path(path) as tmp:
        pictures[0].save(tmp, format="GIF", save_all=True, append_images=pictures[1:], duration=durations, loop=0)


# ---- checkpoints ---------------------------------------------------------------------------


def save_checkpoint(path, state_variables, meta, frames):
    """Write every variable of the run, its metadata (JSON) and its progress frames to one .npz."""
    arrays = {"meta": np.array(json.dumps(meta)), "frames": np.asarray(frames, np.uint8)}
    for group, variables in state_variables.items():
        for i, v in enumerate(variables):
            arrays[f"{group}/{i}"] = np.asarray(v)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)


UNREADABLE = (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError)  # what np.load raises for a damaged file


@contextlib.contextmanager
def _opened_checkpoint(path):
    """A checkpoint opened for reading (np.load: arrays are read when asked for); a damaged file, while it is read,
    is one PrendasError that names it."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            yield npz
    except UNREADABLE as e:
        raise PrendasError(f"{path} is not a readable prendas checkpoint ({type(e).__name__}: {e})") from None


def checkpoint_meta(path):
    """A checkpoint's metadata and the names of its arrays, read without the arrays."""
    with _opened_checkpoint(path) as npz:
        return json.loads(str(npz["meta"])), list(npz.files)


def load_checkpoint(path):
    """Read a checkpoint written by save_checkpoint: (meta, frames, {group: [arrays]})."""
    path = Path(path)
    if not path.is_file():
        raise PrendasError(f"no checkpoint at {path} (runs write them to OUT/checkpoints/checkpoint_TAG.npz)")
    with _opened_checkpoint(path) as npz:
        meta = json.loads(str(npz["meta"]))
        frames = npz["frames"]
        groups = {}
        for key in npz.files:
            if "/" in key:
                group, index = key.split("/")
                groups.setdefault(group, {})[int(index)] = npz[key]
    if meta.get("format") != CHECKPOINT_FORMAT or meta.get("version") != CHECKPOINT_VERSION:
        raise PrendasError(f"{path} is not a prendas checkpoint of version {CHECKPOINT_VERSION}")
    missing = sorted(CHECKPOINT_KEYS - set(meta))
    if missing:
        raise PrendasError(f"{path} is an incomplete prendas checkpoint (no {', '.join(missing)})")
    return meta, frames, {g: [arrays[i] for i in sorted(arrays)] for g, arrays in groups.items()}


def non_finite_groups(groups):
    """The names of the groups ({name: [arrays or variables]}) holding a NaN or an infinity in a floating array."""
    return [name for name, arrays in groups.items()
            if not all(np.isfinite(a).all() for a in map(np.asarray, arrays) if np.issubdtype(a.dtype, np.floating))]


def mismatched_groups(state_variables, saved):
    """The groups ({group: [variables]}) whose saved arrays ({group: [arrays]}) differ in number or shape."""
    return [group for group, variables in state_variables.items()
            if [a.shape for a in saved.get(group, [])] != [tuple(v.shape) for v in variables]]


def restore_variables(state_variables, saved, path):
    """Assign saved arrays to the live variables, after checking that every group matches."""
    mismatched = mismatched_groups(state_variables, saved)
    if mismatched:
        raise PrendasError(f"{path}: the saved {mismatched[0]} does not match the model built from its settings")
    for group, variables in state_variables.items():
        for v, a in zip(variables, saved[group]):
            v.assign(a)


# ---- saved generators ----------------------------------------------------------------------


def check_model_file(path):
    """Fail early, before Keras loads, on a path that cannot be a saved generator or a run's checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise PrendasError(f"no model file at {path}")
    if path.suffix not in (".keras", ".npz") or not zipfile.is_zipfile(path):
        raise PrendasError(f"{path} is not a .keras model file (a zip archive saved by Keras) nor a run's "
                           "checkpoint (checkpoint_TAG.npz)")
    return path
