# prendas: JupyterLab with TensorFlow 2.21 on the GPU, and Fashion-MNIST inside the image.
#
# Why not tensorflow/tensorflow:2.21.0-gpu-jupyter: it ships cuDNN 8, TensorFlow 2.18+ needs cuDNN 9,
# so it logs "Cannot dlopen some GPU libraries" and runs on the CPU (tensorflow#81344, tensorflow/build#217).
# Here: a plain Python image plus the CUDA 12 / cuDNN 9 wheels that tensorflow[and-cuda] pulls; the host
# only provides the driver (NVIDIA Container Toolkit). Same recipe as Jupyter docker-stacks' CUDA images.
#
# Why Debian bookworm: it packages dataset-fashion-mnist and tini (versions below are bookworm's), and
# uid 1000 is free (Ubuntu 24.04 gives it to "ubuntu"). Python 3.12: inside TensorFlow 2.21's 3.10-3.13.
# Pinned by tag only: no registry digest could be checked when this was written.
FROM python:3.12-slim-bookworm

# Must equal the tensorflow pin in requirements.txt (tests/test_docker.py checks it). pip also refuses
# to build if they differ: tensorflow==A and tensorflow[and-cuda]==B cannot both hold.
ARG TF_VERSION=2.21.0

# pipefail: a failing command on the left of a pipe fails the build (hadolint DL4006).
SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# pip runs as root, at build time only.
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

# dataset-fashion-mnist: the four *-ubyte.gz files in /usr/share/datasets/fashion-mnist, so training
# works offline. tini: PID 1 that reaps kernels' zombies and forwards signals to the whole group (-g).
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        dataset-fashion-mnist=0.0~git20200523.55506a9-1 \
        tini=0.19.0-1+b3 \
    && rm -rf /var/lib/apt/lists/* \
    && for f in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do \
           test -s "/usr/share/datasets/fashion-mnist/${f}.gz" || { echo "missing ${f}.gz" >&2; exit 1; }; \
       done
# prendas.data looks here first; it then fails loudly instead of downloading if a file is missing.
ENV FASHION_MNIST_DIR=/usr/share/datasets/fashion-mnist

# docker-stacks convention: jovyan, uid 1000, gid 100 (users). Home and work folder are group-writable
# (setgid) so the container also runs as another uid in group 100 (compose's HOST_UID, for bind mounts).
RUN useradd --create-home --no-log-init --uid 1000 --gid 100 --shell /bin/bash jovyan \
    && mkdir -p /home/jovyan/work \
    && chown 1000:100 /home/jovyan/work \
    && chmod 2775 /home/jovyan /home/jovyan/work

# Exactly the pins of requirements.txt (through requirements-notebook.txt: + JupyterLab, ipykernel, ipywidgets);
# tensorflow again with the [and-cuda] extra, same version: the nvidia-*-cu12 wheels (CUDA 12, cuDNN 9).
COPY requirements.txt requirements-notebook.txt /tmp/requirements/
RUN pip install --no-cache-dir \
        -r /tmp/requirements/requirements-notebook.txt \
        "tensorflow[and-cuda]==${TF_VERSION}" \
    && pip check \
    && rm -rf /tmp/requirements

# TensorFlow's own search path misses some pip CUDA libraries (cusolver, curand, nvjitlink, nvrtc:
# "Cannot dlopen some GPU libraries", tensorflow#63362), so register every nvidia/*/lib folder with the
# dynamic linker. ld.so.conf.d survives the toolkit's ldconfig at container start; LD_LIBRARY_PATH
# would not cover processes that reset their environment. Then check the cache really has them.
RUN site="$(python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" \
    && printf '%s\n' "${site}"/nvidia/*/lib > /etc/ld.so.conf.d/python-nvidia-wheels.conf \
    && ldconfig \
    && ldconfig -p > /tmp/ldcache.txt \
    && for lib in libcudart.so.12 libcublas.so.12 libcudnn.so.9 libcufft.so.11 libcurand.so.10 \
                  libcusolver.so.11 libcusparse.so.12 libnvJitLink.so.12 libnvrtc.so.12; do \
           grep -F "${lib} " /tmp/ldcache.txt > /dev/null || { echo "${lib} not in ld cache" >&2; exit 1; }; \
       done \
    && rm /tmp/ldcache.txt

# XLA (Keras 3 jit-compiles on the GPU) runs ptxas, which only the nvidia-cuda-nvcc-cu12 wheel carries.
# The path follows the base image's Python (3.12); the RUN below fails the build if it is wrong.
ENV PATH=/usr/local/lib/python3.12/site-packages/nvidia/cuda_nvcc/bin:${PATH} \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    TF_FORCE_GPU_ALLOW_GROWTH=true
# TF_FORCE_GPU_ALLOW_GROWTH: several notebook kernels can share one GPU instead of the first taking it all.

# The package itself (its dependencies are already pinned above). With the repository bind-mounted at
# /home/jovyan/work, the working copy comes first on sys.path; this copy serves runs without the mount.
COPY pyproject.toml README.md LICENSE /tmp/prendas-src/
COPY prendas /tmp/prendas-src/prendas
RUN pip install --no-cache-dir --no-deps /tmp/prendas-src \
    && rm -rf /tmp/prendas-src \
    && ptxas --version \
    && python -c "import tensorflow, keras, prendas; print('tensorflow', tensorflow.__version__, 'keras', keras.__version__)"

USER 1000:100
# HOME and USER set here, not looked up: with compose's HOST_UID the uid may have no passwd entry.
# No .pyc files written into the bind-mounted repository (site-packages was compiled at install);
# unbuffered output, so training progress reaches `docker compose logs` at once.
ENV HOME=/home/jovyan \
    USER=jovyan \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
WORKDIR /home/jovyan/work
EXPOSE 8888 6006

# /api answers without a token. The server starts in seconds; the start period leaves room for a slow
# first start of this multi-gigabyte image.
HEALTHCHECK --interval=30s --timeout=10s --start-period=90s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8888/api', timeout=5)"]

ENTRYPOINT ["tini", "-g", "--"]
# Token: Jupyter Server reads JUPYTER_TOKEN (or JUPYTER_TOKEN_FILE); unset or empty, it makes a random one
# and prints it in the log. Never pass an empty --IdentityProvider.token: that turns authentication off.
# --allow-root: a host user who is root sets HOST_UID=0 so files in the bind-mounted repository stay
# theirs; the container then runs as root, and JupyterLab refuses that without this flag.
CMD ["jupyter", "lab", "--ip=0.0.0.0", "--port=8888", "--no-browser", "--allow-root", "--ServerApp.root_dir=/home/jovyan/work"]
