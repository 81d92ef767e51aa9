"""Run gan_prendas.ipynb headless with the small parameters of tests/test_notebook.py (docker/check.sh, in the container).

    python docker/run_notebook.py gan_prendas.ipynb executed.ipynb

Like papermill, which is not in the image: a cell setting the parameters goes in after the cell tagged
`parameters`, then nbclient (in the image, with JupyterLab) runs every cell with the notebook's folder as the
working folder, so the run writes images/, models/ and checkpoints/ where a user's Run All would. The
parameters are read from the test at run time, so this follows the test as it changes.
"""

import ast
import json
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEST = ROOT / "tests" / "test_notebook.py"
# Used only where the test cannot be read (the same values it held when this was written).
FALLBACK = {"EPOCHS": 1, "IMAGES": 256, "BATCH_SIZE": 64, "BEST_EPOCHS": 1, "BEST_IMAGES": 256}


def test_parameters(test=TEST):
    """The parameters dict of the test's first execute_notebook(...) call that sets IMAGES, and where it came from."""
    try:
        tree = ast.parse(test.read_text())
    except (OSError, SyntaxError):
        return dict(FALLBACK), "built-in fallback"
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) == "execute_notebook":
            for keyword in node.keywords:
                if keyword.arg == "parameters":
                    try:
                        value = ast.literal_eval(keyword.value)
                    except ValueError:
                        continue
                    if isinstance(value, dict) and "IMAGES" in value:
                        return value, test.name
    return dict(FALLBACK), "built-in fallback"


def parameter_names(notebook):
    """The names the cell tagged `parameters` assigns, in order."""
    return re.findall(r"^([A-Za-z_][A-Za-z0-9_]*) = ", notebook.cells[_parameters_cell(notebook)].source, re.MULTILINE)


def inject(notebook, parameters):
    """A cell setting `parameters` goes in after the parameters cell (names the notebook lacks are left out).

    notebook: as nbformat.read returns it. Returns the parameters set.
    """
    import nbformat

    names = parameter_names(notebook)
    kept = {name: value for name, value in parameters.items() if name in names}
    source = "# Parameters (docker/run_notebook.py)\n" + "".join(f"{name} = {value!r}\n" for name, value in kept.items())
    cell = nbformat.v4.new_code_cell(source, metadata={"tags": ["injected-parameters"]})
    notebook.cells.insert(_parameters_cell(notebook) + 1, cell)
    return kept


def _parameters_cell(notebook):
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type == "code" and "parameters" in cell.metadata.get("tags", []):
            return index
    raise SystemExit("run_notebook.py: the notebook has no cell tagged 'parameters'")


def main(argv):
    if len(argv) != 2:
        raise SystemExit(__doc__.split("\n\n")[1])
    source, target = Path(argv[0]).resolve(), Path(argv[1])
    import nbclient
    import nbformat

    parameters, origin = test_parameters()
    nb = nbformat.read(source, as_version=4)
    kept = inject(nb, parameters)
    print(f"parameters ({origin}): {json.dumps(kept)}", flush=True)
    dropped = sorted(set(parameters) - set(kept))
    if dropped:
        print(f"not parameters of the notebook, left out: {', '.join(dropped)}", flush=True)
    client = nbclient.NotebookClient(nb, timeout=None, kernel_name=nb.metadata.kernelspec.name,
                                     resources={"metadata": {"path": str(source.parent)}})
    start = time.monotonic()
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as error:
        print(str(error)[-3000:], file=sys.stderr)
        return 1
    finally:
        nbformat.write(nb, target)
        print(f"ran {sum(c.cell_type == 'code' for c in nb.cells)} code cells in {time.monotonic() - start:.1f} s; "
              f"executed notebook: {target}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
