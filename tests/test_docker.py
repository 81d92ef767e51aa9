"""The Docker files without a Docker engine: linters pass, the facts the README and docs/ promise hold, and the
scripts under docker/ behave (the entrypoint's choice of user, run with stubs; the check's pieces).

Building and running the images is docker/check.sh's job (it downloads gigabytes, so it is not run here).
hadolint, check-jsonschema and shellcheck come from requirements-dev.txt; `docker compose config` is used where
Compose v2 is installed. Offline and fast.
"""

import ast
import fnmatch
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml  # installed with requirements-dev.txt (papermill and jupyter-events depend on it)

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "docker-compose.yml"
START = ROOT / "docker" / "start.sh"  # the image's entrypoint, /usr/local/bin/prendas-start
CHECK = ROOT / "docker" / "check.sh"
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
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
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
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- (c): the image installs exactly the pins of requirements.txt --------------------------------------

VARIANTS = {"gpu": "tensorflow[and-cuda]", "cpu": "tensorflow-cpu"}  # VARIANT -> the TensorFlow it installs


def variant_case(instructions):
    """The `case "${VARIANT}"` arms of the pip step: {variant: the tensorflow package it sets}."""
    [run] = [args for args in args_of(instructions, "RUN") if 'case "${VARIANT}"' in args]
    return dict(re.findall(r'(\w+)\) tensorflow="([^"]+)"', run))


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


def test_each_variant_renames_tensorflow_and_keeps_its_version(instructions, tmp_path):
    # The GPU image's tensorflow[and-cuda] and the CPU image's tensorflow-cpu, each at the version that
    # requirements.txt pins: the build runs this very sed on its copy of requirements.txt.
    assert arg_defaults(instructions).get("VARIANT") == "gpu", "a plain `docker build .` must give the GPU image"
    assert variant_case(instructions) == VARIANTS
    [sed] = [c for c in shell_commands(instructions) if c[0] == "sed"]
    assert sed[-1] == "/tmp/requirements/requirements.txt" and "-i" in sed
    runtime = read_requirements(ROOT / "requirements.txt")
    assert [line for line in (ROOT / "requirements.txt").read_text().splitlines() if line.startswith("tensorflow==")] \
        == [f"tensorflow=={runtime['tensorflow'][1]}"], "exactly one line `tensorflow==X` for the sed to rename"
    for variant, package in VARIANTS.items():
        copy = tmp_path / variant / "requirements.txt"
        copy.parent.mkdir()
        shutil.copy(ROOT / "requirements.txt", copy)
        command = [token.replace("${tensorflow}", package) for token in sed[:-1]] + [str(copy)]
        subprocess.run(command, check=True, timeout=30)
        rewritten = read_requirements(copy)
        name, _, extras = package.partition("[")
        expected = {**{k: v for k, v in runtime.items() if k != "tensorflow"},
                    name: (f"[{extras}" if extras else "", runtime["tensorflow"][1])}
        assert rewritten == expected, f"VARIANT={variant}: {rewritten}"


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


def test_compose_builds_the_gpu_image_for_the_default_service_and_the_cpu_image_for_the_other(compose, instructions):
    services = compose["services"]
    images = {}
    for name, service in services.items():
        build = service.get("build")
        assert isinstance(build, dict) and build.get("context") in (".", "./"), f"{name} must build the Dockerfile here"
        assert build.get("dockerfile", "Dockerfile") == "Dockerfile"
        variant = build.get("args", {}).get("VARIANT")
        assert variant in variant_case(instructions), f"{name}: VARIANT={variant!r} is not one the Dockerfile knows"
        # Each variant its own image name, so building one never replaces the other.
        images[variant] = service["image"]
        expected = "cpu" if service.get("profiles") else "gpu"
        assert variant == expected, f"{name} builds VARIANT={variant}, expected {expected}"
    assert sorted(images) == ["cpu", "gpu"] and len(set(images.values())) == 2, images


def test_compose_bind_mounts_the_repository_where_jupyter_works(compose, instructions):
    for name, service in compose["services"].items():
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
        # No user: the entrypoint runs the server as the folder's owner; a fixed user: would undo that.
        assert "user" not in service, f"{name}: no user: (docker/start.sh picks the folder's owner)"
    assert args_of(instructions, "WORKDIR")[-1] == WORKDIR


def docker_compose():
    """`docker compose` (v2) where it is installed, else None."""
    docker = shutil.which("docker")
    if docker is None:
        return None
    try:
        found = subprocess.run([docker, "compose", "version"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return [docker, "compose"] if found.returncode == 0 else None


def test_docker_compose_config_accepts_the_file_and_refuses_an_empty_token(tmp_path):
    command = docker_compose()
    if command is None:
        pytest.skip("docker compose (v2) is not installed here; check-jsonschema above validates the file")
    empty = tmp_path / "empty.env"  # not a developer's .env
    empty.write_text("")
    base = [*command, "--env-file", str(empty), "--project-directory", str(ROOT), "--profile", "cpu"]
    env = {k: v for k, v in os.environ.items() if k not in ("JUPYTER_TOKEN", "ALLOW_ROOT")}
    refused = subprocess.run([*base, "config"], capture_output=True, text=True, env=env, timeout=60, check=False)
    assert refused.returncode != 0 and "set JUPYTER_TOKEN in .env" in refused.stderr, refused.stderr
    result = subprocess.run([*base, "config", "--format", "json"], capture_output=True, text=True,
                            env={**env, "JUPYTER_TOKEN": "t" * 48}, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    assert {name: s["build"]["args"]["VARIANT"] for name, s in services.items()} == {"jupyter": "gpu", "jupyter-cpu": "cpu"}
    assert services["jupyter-cpu"]["environment"]["NVIDIA_VISIBLE_DEVICES"] == "void"
    for service in services.values():
        assert service["environment"]["JUPYTER_TOKEN"] == "t" * 48 and service["environment"]["ALLOW_ROOT"] == ""
        assert "user" not in service


# --- (e): the Dockerfile -------------------------------------------------------------------------------


def test_image_starts_as_root_only_to_run_the_server_as_the_repository_owner(instructions):
    # No USER: the entrypoint starts as root, gives jovyan the mounted folder's owner's ids and drops to them
    # (its choices are tested below, with stubs). A USER root, or any USER after which the entrypoint could
    # not change user, would undo that.
    assert not args_of(instructions, "USER"), "no USER: docker/start.sh drops to the repository's owner"
    assert any("--uid 1000" in args and "--gid 100" in args for args in args_of(instructions, "RUN")), (
        "jovyan, uid 1000, gid 100: docker-stacks' default, used where no folder is mounted"
    )
    copies = [shlex.split(args) for args in args_of(instructions, "COPY")]
    assert ["docker/start.sh", "/usr/local/bin/prendas-start"] in copies
    assert ["chmod", "755", "/usr/local/bin/prendas-start"] in shell_commands(instructions), (
        "make the entrypoint executable in the image, whatever the checkout did to its mode"
    )


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
    assert exec_form(args_of(instructions, "ENTRYPOINT")[-1]) == ["tini", "-g", "--", "prendas-start"]
    cmd = exec_form(args_of(instructions, "CMD")[-1])
    assert cmd[:2] == ["jupyter", "lab"]
    for option in ("--ip=0.0.0.0", f"--port={PORT}", "--no-browser", f"--ServerApp.root_dir={WORKDIR}"):
        assert option in cmd, f"CMD lacks {option}"
    # The token comes from JUPYTER_TOKEN at run time; an empty token option would turn authentication off.
    assert not any("token" in part.lower() or "password" in part.lower() for part in cmd), cmd
    assert "JUPYTER_TOKEN" not in env_values(instructions), "never bake a token into the image"
    assert PORT in args_of(instructions, "EXPOSE")[-1].split()


def test_base_image_is_python_slim_bookworm_and_overridable(instructions):
    defaults = arg_defaults(instructions)
    assert args_of(instructions, "FROM") == ["${BASE_IMAGE}"], "FROM ${BASE_IMAGE}: the base is a build argument"
    base = defaults["BASE_IMAGE"]
    image, _, tag = base.partition(":")
    assert tag and tag != "latest", f"BASE_IMAGE={base}: pin a tag"
    assert not image.startswith("tensorflow/"), "the official TensorFlow GPU images carry cuDNN 8: no GPU on 2.21"
    assert re.fullmatch(r"python:3\.1[0-3]-slim-bookworm", base), f"BASE_IMAGE={base}: TensorFlow 2.21 takes Python 3.10-3.13"


def test_no_python_version_in_any_path(instructions):
    # Another python:3.X base must build unchanged: site-packages is asked of Python, never spelled out.
    for key, args in instructions:
        if key != "ARG":
            assert not re.search(r"python3\.\d+", args), f"{key} {args[:80]}...: a Python version in a path"


def test_image_sees_the_gpu_through_the_pip_cuda_libraries(instructions):
    env = env_values(instructions)
    assert env.get("NVIDIA_VISIBLE_DEVICES") == "all"
    assert env.get("NVIDIA_DRIVER_CAPABILITIES") == "compute,utility"
    [gpu_step] = [args for args in args_of(instructions, "RUN") if "ldconfig" in args]
    assert gpu_step.startswith('if [ "${VARIANT}" = gpu ]; then'), "the CUDA steps belong to the GPU image only"
    # Every nvidia/*/lib folder registered with the dynamic linker, then ldconfig.
    commands = shell_commands(instructions)
    writes = [i for i, c in enumerate(commands) if re.search(r"nvidia/\*/lib .*> /etc/ld\.so\.conf\.d/\S+\.conf", " ".join(c))]
    assert writes, "register every site-packages/nvidia/*/lib in /etc/ld.so.conf.d/"
    assert ["ldconfig"] in commands[writes[0]:], "run ldconfig after registering the nvidia/*/lib folders"
    # ptxas (for XLA): the nvidia-cuda-nvcc wheel's folder, asked of Python, linked as the CUDA root /usr/local/cuda,
    # and its bin/ on PATH.
    assert 'find_spec("nvidia.cuda_nvcc")' in gpu_step
    assert ["ln", "-s", "${nvcc_dir}", "/usr/local/cuda"] in commands
    assert "/usr/local/cuda/bin" in env["PATH"].split(":")


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
    # The token and nothing else: the uid is the start script's business (no HOST_UID any more).
    assert list(values) == ["JUPYTER_TOKEN"], values
    # Empty, so a copied .env is refused by compose until someone puts a real token in it.
    assert values["JUPYTER_TOKEN"].strip() == ""


# --- docker/start.sh, the entrypoint: whom the server runs as --------------------------------------------


@pytest.fixture
def start(tmp_path):
    """Run docker/start.sh unprivileged: stubs stand in for id, stat, chown and setpriv.

    start(owner="U G", uid=0, uid_map=ROOTFUL, env={}, work=True) -> (CompletedProcess, passwd text, chowned paths).
    The command it is given is `echo hello`; setpriv's stub prints its arguments instead of switching user.
    """
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    for name, body in {
        "id": 'echo "${STUB_UID}"',
        "stat": '[ "$2" = "%u %g" ] && echo "${STUB_OWNER}" || echo "${STUB_OWNER%% *}"',
        "chown": 'printf "%s\\n" "$@" >> "${STUB_CHOWNED}"',
        # The write probe (a root-owned folder): fails unless STUB_WRITABLE=1; any other use prints its arguments.
        "setpriv": 'case "$*" in *mktemp*) [ "${STUB_WRITABLE:-0}" = 1 ]; exit ;; esac; echo "setpriv $*"',
    }.items():
        (stubs / name).write_text(f"#!/bin/bash\n{body}\n")
        (stubs / name).chmod(0o755)
    home = tmp_path / "home"

    def run(owner="1001 1001", uid=0, uid_map="0 0 4294967295", env=None, work=True):
        home.mkdir(exist_ok=True)
        if work:
            (home / "work").mkdir(exist_ok=True)
        (home / ".bashrc").write_text("")
        passwd = tmp_path / "passwd"
        passwd.write_text("root:x:0:0:root:/root:/bin/bash\njovyan:x:1000:100::/home/jovyan:/bin/bash\n")
        (tmp_path / "uid_map").write_text(uid_map + "\n")
        chowned = tmp_path / "chowned"
        chowned.write_text("")
        result = subprocess.run(
            ["bash", str(START), "echo", "hello"], capture_output=True, text=True, timeout=30, check=False,
            env={"PATH": f"{stubs}:{os.environ['PATH']}", "HOME": str(home), "PRENDAS_PASSWD": str(passwd),
                 "PRENDAS_UID_MAP": str(tmp_path / "uid_map"), "STUB_UID": str(uid), "STUB_OWNER": owner,
                 "STUB_CHOWNED": str(chowned), **(env or {})},
        )
        return result, passwd.read_text(), chowned.read_text().split("\n")

    return run


def test_start_runs_as_the_owner_of_the_mounted_repository(start):
    result, passwd, chowned = start(owner="1001 1002")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "setpriv --reuid=1001 --regid=1002 --clear-groups -- echo hello\n"
    # jovyan is now them, so `docker compose exec -u jovyan` runs as them too; root's line is untouched.
    assert passwd.splitlines() == ["root:x:0:0:root:/root:/bin/bash", "jovyan:x:1001:1002::/home/jovyan:/bin/bash"]
    # Their home, but never the mounted repository: nothing of the user's is chowned.
    assert chowned[:2] == ["-h", "1001:1002"]
    names = [Path(p).name for p in chowned[2:] if p]
    assert "home" in names and ".bashrc" in names and "work" not in names, names
    [line] = result.stderr.splitlines()
    assert line.startswith("prendas-start: running as uid 1001, gid 1002 (jovyan), the owner of /")
    assert line.endswith("/home/work")


def test_start_keeps_the_server_off_root_and_says_what_to_set(start):
    # A root-owned folder on an ordinary engine: jovyan's default ids, and one line saying what to do.
    result, passwd, _ = start(owner="0 0")
    assert result.stdout == "setpriv --reuid=1000 --regid=100 --clear-groups -- echo hello\n"
    warnings = [line for line in result.stderr.splitlines() if "WARNING" in line]
    assert len(warnings) == 1 and "belongs to root" in warnings[0] and "ALLOW_ROOT=1" in warnings[0], result.stderr
    assert "jovyan:x:1000:100:" in passwd
    # The same, where the mount lets uid 1000 write although it shows root as the owner (Docker Desktop's
    # file sharing): the server runs as 1000 and nothing is wrong, so no warning.
    result, _, _ = start(owner="0 0", env={"STUB_WRITABLE": "1"})
    assert result.stdout == "setpriv --reuid=1000 --regid=100 --clear-groups -- echo hello\n"
    assert "WARNING" not in result.stderr and "belongs to root but lets it write" in result.stderr, result.stderr


@pytest.mark.parametrize("uid_map, env, why", [
    ("0 0 4294967295", {"ALLOW_ROOT": "1"}, "ALLOW_ROOT=1"),  # asked for
    ("0 1000 1\n1 100000 65536", {}, "rootless"),  # root here is the unprivileged host user who owns the folder
])
def test_start_runs_as_root_only_when_root_here_is_not_root_there_or_when_asked(start, uid_map, env, why):
    result, passwd, chowned = start(owner="0 0", uid_map=uid_map, env=env)
    assert result.stdout == "hello\n", result.stderr  # the command itself, as root: no setpriv
    assert why in result.stderr and "WARNING" not in result.stderr
    assert "jovyan:x:1000:100:" in passwd and chowned == [""]


def test_start_respects_a_user_given_with_user_and_says_when_it_cannot_write(start):
    result, _, chowned = start(uid=1234, work=False, owner="1001 1001")  # no writable work folder
    assert result.stdout == "hello\n" and chowned == [""]
    assert "WARNING: uid 1234 cannot write" in result.stderr and "owned by uid 1001" in result.stderr
    result, _, _ = start(uid=1234)  # the folder is writable (the test's own): nothing to say
    assert result.stdout == "hello\n" and result.stderr == ""


# --- docker/check.sh and the scripts beside it -------------------------------------------------------------


def test_scripts_parse_and_pass_shellcheck():
    scripts = sorted((ROOT / "docker").glob("*.sh"))
    assert {p.name for p in scripts} >= {"start.sh", "check.sh", "make-base.sh"}
    for script in scripts:
        result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, timeout=30, check=False)
        assert result.returncode == 0, f"{script.name}: {result.stderr}"
    result = subprocess.run([venv_tool("shellcheck"), *map(str, scripts)], capture_output=True, text=True, timeout=120,
                            check=False)
    assert result.returncode == 0, result.stdout


def test_check_skips_in_one_line_without_a_docker_engine(tmp_path):
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    (stubs / "docker").write_text("#!/bin/sh\necho 'Cannot connect to the Docker daemon' >&2\nexit 1\n")
    (stubs / "docker").chmod(0o755)
    result = subprocess.run(["bash", str(CHECK)], capture_output=True, text=True, timeout=30, check=False,
                            env={**os.environ, "PATH": f"{stubs}:{os.environ['PATH']}"})
    assert result.returncode == 0 and result.stderr == ""
    assert result.stdout.splitlines() == ["docker/check.sh: skipped: no Docker engine answers here (docker info failed)"]


def test_check_never_runs_in_ci():
    assert "check.sh" not in (ROOT / ".ci" / "run").read_text(), "docker/check.sh downloads gigabytes: not in CI"


@pytest.fixture(scope="module")
def run_notebook():
    spec = importlib.util.spec_from_file_location("run_notebook", ROOT / "docker" / "run_notebook.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_check_runs_the_notebook_with_the_tests_small_parameters(run_notebook):
    import nbformat

    parameters, origin = run_notebook.test_parameters()
    assert origin == "test_notebook.py", "the parameters must come from tests/test_notebook.py, not the fallback"
    assert parameters["IMAGES"] <= 1024 and parameters["EPOCHS"] <= 2, parameters  # small, as the test's
    notebook = nbformat.read(ROOT / "gan_prendas.ipynb", as_version=4)
    names = run_notebook.parameter_names(notebook)
    kept = run_notebook.inject(notebook, parameters)
    assert kept == {k: v for k, v in parameters.items() if k in names} and set(kept) == set(parameters)
    cells = [c for c in notebook.cells if c.cell_type == "code"]
    assert "parameters" in cells[0].metadata["tags"] and cells[1].metadata["tags"] == ["injected-parameters"]
    assigned = {node.targets[0].id: ast.literal_eval(node.value) for node in ast.parse(cells[1].source).body}
    assert assigned == parameters
    nbformat.validate(notebook)
