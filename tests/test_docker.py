"""The Docker files, on paper: linters pass and the facts the README and docs/ promise hold.

No Docker engine is needed (none runs where these tests run): hadolint and check-jsonschema come from
requirements-dev.txt, the rest reads the files. Offline and fast.
"""

import fnmatch
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml  # installed with requirements-dev.txt (papermill and jupyter-events depend on it)

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "docker-compose.yml"
WORKDIR = "/home/jovyan/work"  # where the repository is bind-mounted and JupyterLab is rooted
DATA_DIR = "/usr/share/datasets/fashion-mnist"  # what the Debian package dataset-fashion-mnist installs
PORT = "8888"
TENSORBOARD_PORT = "6006"


# --- reading the files -------------------------------------------------------------------------------


def dockerfile_instructions(text):
    """(INSTRUCTION, arguments) in order: continuation lines joined, comment lines dropped, as Docker does."""
    instructions, pending = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#") or (not stripped and not pending):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        logical = (pending + stripped).strip()
        pending = ""
        if logical:
            keyword, _, args = logical.partition(" ")
            instructions.append((keyword.upper(), args.strip()))
    assert not pending, "the Dockerfile ends inside a continued line"
    return instructions


@pytest.fixture(scope="module")
def instructions():
    return dockerfile_instructions(DOCKERFILE.read_text())


def args_of(instructions, keyword):
    return [args for key, args in instructions if key == keyword]


def arg_defaults(instructions):
    """ARG NAME=default, as a dict."""
    defaults = {}
    for args in args_of(instructions, "ARG"):
        name, _, value = args.partition("=")
        defaults[name.strip()] = value.strip().strip('"')
    return defaults


def env_values(instructions):
    """The final value of every ENV variable (only the NAME=value form is used in this Dockerfile)."""
    values = {}
    for args in args_of(instructions, "ENV"):
        for token in shlex.split(args):
            name, sep, value = token.partition("=")
            assert sep, f"ENV {args!r}: use the NAME=value form"
            values[name] = value
    return values


def exec_form(args):
    """The JSON array of CMD/ENTRYPOINT/HEALTHCHECK CMD in exec form."""
    value = json.loads(args)
    assert isinstance(value, list), f"{args!r} is not in exec form"
    return value


def shell_commands(instructions):
    """Every simple command of every RUN, as argument lists (split at &&, ||, ; and |)."""
    commands = []
    for args in args_of(instructions, "RUN"):
        current = []
        lexer = shlex.shlex(args, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        for token in lexer:
            if token in ("&&", "||", ";", "|", "(", ")", "{", "}"):
                if current:
                    commands.append(current)
                current = []
            else:
                current.append(token)
        if current:
            commands.append(current)
    return commands


def pip_installs(instructions):
    """The arguments of every `pip install` / `python -m pip install` in a RUN."""
    found = []
    for command in shell_commands(instructions):
        for start in range(len(command)):
            head = command[start:start + 2]
            if head in (["pip", "install"], ["pip3", "install"]):
                found.append(command[start + 2:])
                break
            if command[start:start + 4] in (["python", "-m", "pip", "install"], ["python3", "-m", "pip", "install"]):
                found.append(command[start + 4:])
                break
    return found


def read_requirements(path):
    """{name: (extras, version)} of a requirements file, following `-r other.txt`; every line must pin ==."""
    pins = {}
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith(("-r ", "--requirement ")):
            pins.update(read_requirements(path.parent / line.split(None, 1)[1]))
            continue
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)(\[[A-Za-z0-9_,.-]+\])?==([A-Za-z0-9_.+!-]+)", line)
        assert match, f"{path.name}: {line!r} is not pinned as name==version"
        pins[match[1].lower().replace("_", "-")] = (match[2] or "", match[3])
    return pins


def substitute(text, variables):
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: variables.get(m[1] or m[2], m[0]), text)


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load(COMPOSE.read_text())  # resolves the `<<: *jupyter` merge keys like compose does


def venv_tool(name):
    """A validator from requirements-dev.txt, next to the Python running the tests."""
    tool = Path(sys.executable).parent / name
    if not tool.exists():
        pytest.fail(f"{tool} is missing: pip install -r requirements-dev.txt")
    return tool


# --- (a), (b): the linters -----------------------------------------------------------------------------


def test_hadolint_finds_nothing():
    # Threshold "style": any finding at all, down to style, fails; inline ignores must say why (below).
    result = subprocess.run(
        [venv_tool("hadolint"), "--no-color", "--failure-threshold", "style", DOCKERFILE.name],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_every_hadolint_ignore_says_why():
    for number, line in enumerate(DOCKERFILE.read_text().splitlines(), 1):
        match = re.search(r"#\s*hadolint\s+ignore=([A-Z0-9,]+)(.*)", line)
        if match:
            assert len(match[2].strip(" :-")) >= 10, f"Dockerfile:{number}: say why {match[1]} is ignored"


def test_compose_file_matches_the_compose_spec():
    result = subprocess.run(
        [venv_tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", COMPOSE.name],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- (c): the image installs exactly the pins of requirements.txt --------------------------------------


def test_image_installs_the_pinned_requirements(instructions):
    pins = read_requirements(ROOT / "requirements-notebook.txt")
    runtime = read_requirements(ROOT / "requirements.txt")
    assert set(runtime) <= set(pins), "requirements-notebook.txt must include requirements.txt (-r)"

    copied = " ".join(args_of(instructions, "COPY"))
    for name in ("requirements.txt", "requirements-notebook.txt"):
        assert re.search(rf"(^|\s){re.escape(name)}(\s|$)", copied), f"the Dockerfile does not COPY {name}"

    variables = arg_defaults(instructions)
    installs = pip_installs(instructions)
    requirement_files, specs, local_paths = [], [], []
    for args in installs:
        it = iter(args)
        no_deps = "--no-deps" in args
        for token in it:
            if token in ("-r", "--requirement"):
                requirement_files.append(next(it))
            elif token.startswith("--requirement="):
                requirement_files.append(token.split("=", 1)[1])
            elif token.startswith("-"):
                assert token in ("--no-cache-dir", "--no-deps"), f"unexpected pip option {token}"
            elif token.startswith(("/", ".")):
                assert no_deps, f"pip install {token} must use --no-deps: dependencies come from the pins"
                local_paths.append(token)
            else:
                specs.append(substitute(token, variables))
    assert [Path(f).name for f in requirement_files] == ["requirements-notebook.txt"]
    assert local_paths, "the image must install the prendas package itself (pip install --no-deps ...)"

    # Nothing but the pins: any package named on a pip command line carries the pinned version.
    for spec in specs:
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)(\[[A-Za-z0-9_,.-]+\])?==([A-Za-z0-9_.+!-]+)", spec)
        assert match, f"pip install {spec!r}: pin it with == (and to the version in requirements.txt)"
        name = match[1].lower().replace("_", "-")
        assert name in pins, f"pip install {spec!r}: {name} is not in requirements.txt"
        assert match[3] == pins[name][1], f"pip install {spec!r}, but requirements.txt pins {pins[name][1]}"

    # TensorFlow with its CUDA wheels, at exactly the version requirements.txt pins.
    tensorflow = [s for s in specs if s.lower().startswith("tensorflow[and-cuda]==")]
    assert tensorflow == [f"tensorflow[and-cuda]=={runtime['tensorflow'][1]}"], specs


# --- (d): compose -------------------------------------------------------------------------------------


def test_compose_publishes_jupyter_on_loopback_only(compose):
    for name, service in compose["services"].items():
        ports = service.get("ports", [])
        assert ports, f"{name} publishes no port"
        for port in ports:
            if isinstance(port, dict):
                host_ip, published, target = port.get("host_ip"), str(port.get("published")), str(port["target"])
            else:
                parts = str(port).split(":")
                assert len(parts) == 3, f"{name}: {port!r} must name the host address, 127.0.0.1"
                host_ip, published, target = parts
            assert host_ip == "127.0.0.1", f"{name}: {port!r} is reachable from the network"
            # Jupyter's, and TensorBoard's, which the notebook starts and shows inline (%tensorboard)
            assert (published, target) in ((PORT, PORT), (TENSORBOARD_PORT, TENSORBOARD_PORT)), f"{name}: {port!r}"
        assert f"127.0.0.1:{PORT}:{PORT}" in map(str, ports), f"{name} does not publish Jupyter's port"


def test_compose_requires_a_token_and_hard_codes_none(compose):
    required = re.compile(r"\$\{JUPYTER_TOKEN:\?[^}]+\}")  # `:?`: unset or empty stops compose
    for name, service in compose["services"].items():
        environment = service.get("environment")
        if isinstance(environment, list):
            environment = dict(item.partition("=")[::2] for item in environment)
        assert environment and "JUPYTER_TOKEN" in environment, f"{name} gets no JUPYTER_TOKEN"
        assert required.fullmatch(str(environment["JUPYTER_TOKEN"])), (
            f"{name}: JUPYTER_TOKEN must be ${{JUPYTER_TOKEN:?message}}, not {environment['JUPYTER_TOKEN']!r}"
        )
        assert "command" not in service or "token" not in str(service["command"]).lower(), name
        assert "env_file" not in service, f"{name}: the token comes from the environment or .env only"


def test_compose_reserves_the_gpu_for_the_default_service_only(compose):
    services = compose["services"]
    default = [name for name, service in services.items() if not service.get("profiles")]
    assert len(default) == 1, f"`docker compose up` must start exactly one service, not {default}"
    devices = services[default[0]]["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}], devices

    others = [name for name in services if name not in default]
    assert others, "no CPU-only way: add a service under a profile"
    for name in others:
        assert "deploy" not in services[name], f"{name} is the CPU-only service: no device reservation"


def test_compose_bind_mounts_the_repository_where_jupyter_works(compose, instructions):
    for name, service in compose["services"].items():
        assert service.get("build") in (".", "./", {"context": "."}), f"{name} must build the Dockerfile here"
        mounts = []
        for volume in service.get("volumes", []):
            if isinstance(volume, dict):
                mounts.append((volume.get("type"), volume.get("source"), volume.get("target")))
            else:
                source, target = volume.split(":")[:2]
                mounts.append(("bind", source, target))
        assert ("bind", ".", WORKDIR) in [(t, s.rstrip("/") or ".", d) for t, s, d in mounts], (
            f"{name}: the repository must be bind-mounted at {WORKDIR}: {mounts}"
        )
        user = str(service.get("user", ""))
        assert not re.match(r"(0|root)(:|$)", user), f"{name} runs as root"
    assert args_of(instructions, "WORKDIR")[-1] == WORKDIR


# --- (e): the Dockerfile -------------------------------------------------------------------------------


def test_image_runs_as_jovyan_not_root(instructions):
    users = [(i, args) for i, (key, args) in enumerate(instructions) if key == "USER"]
    assert users, "no USER: the server would run as root"
    index, user = users[-1]
    assert user.split(":")[0] in ("1000", "jovyan"), f"USER {user}: docker-stacks' jovyan is uid 1000"
    assert all(key != "RUN" for key, _ in instructions[index:]), "a RUN after the last USER runs as that user"
    assert any("--uid 1000" in args and "--gid 100" in args for args in args_of(instructions, "RUN"))


def test_image_carries_fashion_mnist(instructions):
    installs = [c for c in shell_commands(instructions) if c[:2] == ["apt-get", "install"]]
    packages = [token.split("=")[0] for command in installs for token in command[2:] if not token.startswith("-")]
    assert "dataset-fashion-mnist" in packages, "Fashion-MNIST must be inside the image (dataset-fashion-mnist)"
    assert env_values(instructions).get("FASHION_MNIST_DIR") == DATA_DIR


def test_image_has_a_healthcheck_on_the_jupyter_api(instructions):
    checks = args_of(instructions, "HEALTHCHECK")
    assert len(checks) == 1, "exactly one HEALTHCHECK"
    options, _, command = checks[0].partition("CMD")
    start = re.search(r"--start-period=(\d+)s", options)
    assert start and int(start[1]) >= 30, "give JupyterLab a start period of 30 s or more"
    assert f"http://127.0.0.1:{PORT}/api" in command and "token" not in command.lower()


def test_image_starts_jupyterlab_under_tini_with_a_token(instructions):
    assert exec_form(args_of(instructions, "ENTRYPOINT")[-1])[:3] == ["tini", "-g", "--"]
    cmd = exec_form(args_of(instructions, "CMD")[-1])
    assert cmd[:2] == ["jupyter", "lab"]
    for option in ("--ip=0.0.0.0", f"--port={PORT}", "--no-browser", f"--ServerApp.root_dir={WORKDIR}"):
        assert option in cmd, f"CMD lacks {option}"
    # The token comes from JUPYTER_TOKEN at run time; an empty token option would turn authentication off.
    assert not any("token" in part.lower() or "password" in part.lower() for part in cmd), cmd
    assert "JUPYTER_TOKEN" not in env_values(instructions), "never bake a token into the image"
    assert PORT in args_of(instructions, "EXPOSE")[-1].split()


def test_image_sees_the_gpu_through_the_pip_cuda_libraries(instructions):
    base = args_of(instructions, "FROM")[0].split()[0]
    image, _, tag = base.partition(":")
    assert tag and tag != "latest", f"FROM {base}: pin a tag"
    assert not image.startswith("tensorflow/"), "the official TensorFlow GPU images carry cuDNN 8: no GPU on 2.21"
    env = env_values(instructions)
    assert env.get("NVIDIA_VISIBLE_DEVICES") == "all"
    assert env.get("NVIDIA_DRIVER_CAPABILITIES") == "compute,utility"
    # ptxas (for XLA) on PATH, under the site-packages of the base image's Python.
    python = re.fullmatch(r"(?:docker\.io/)?(?:library/)?python:(\d+\.\d+)[.\w-]*", base)
    assert python, f"FROM {base}: expected an official python:X.Y image"
    assert f"/usr/local/lib/python{python[1]}/site-packages/nvidia/cuda_nvcc/bin" in env["PATH"].split(":")
    # Every nvidia/*/lib folder registered with the dynamic linker, then ldconfig.
    commands = shell_commands(instructions)
    writes = [i for i, c in enumerate(commands) if re.search(r"nvidia/\*/lib .*> /etc/ld\.so\.conf\.d/\S+\.conf", " ".join(c))]
    assert writes, "register every site-packages/nvidia/*/lib in /etc/ld.so.conf.d/"
    assert ["ldconfig"] in commands[writes[0]:], "run ldconfig after registering the nvidia/*/lib folders"


# --- the files beside them ---------------------------------------------------------------------------


def test_dockerignore_keeps_secrets_and_results_out_but_lets_the_sources_in(instructions):
    patterns = [
        line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]

    def ignored(path):
        verdict = False
        for pattern in patterns:
            negate = pattern.startswith("!")
            core = pattern.lstrip("!").strip("/")
            variants = {core, core.replace("**/", "")}
            parts = Path(path).parts
            prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
            if any(fnmatch.fnmatchcase(p, v) for p in prefixes for v in variants):
                verdict = not negate
        return verdict

    for path in (".env", ".venv", ".git", "models", "images", "checkpoints", "prendas/__pycache__"):
        assert ignored(path), f".dockerignore lets {path} into the build context"
    for args in args_of(instructions, "COPY"):
        for source in shlex.split(args)[:-1]:
            if not source.startswith("--"):
                assert not ignored(source), f".dockerignore hides {source}, which the Dockerfile copies"
                assert (ROOT / source).exists(), f"the Dockerfile copies {source}, which is not in the repository"


def test_env_example_holds_no_usable_token():
    values = dict(
        line.partition("=")[::2] for line in (ROOT / ".env.example").read_text().splitlines()
        if "=" in line and not line.lstrip().startswith("#")
    )
    assert "JUPYTER_TOKEN" in values
    # Empty, so a copied .env is refused by compose until someone puts a real token in it.
    assert values["JUPYTER_TOKEN"].strip() == ""
