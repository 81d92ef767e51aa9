# prendas: JupyterLab with TensorFlow 2.21 and Fashion-MNIST inside the image, in two variants from this one file:
#   VARIANT=gpu (the default; image prendas-jupyter):  TensorFlow with the CUDA 12 / cuDNN 9 wheels, 6.7 GB
#   VARIANT=cpu (image prendas-jupyter-cpu):          tensorflow-cpu, no CUDA at all, 1.8 GB
# (sizes as docker image ls gave them, built by docker/check.sh on its stand-in base; docs/notebook.md)
# docker-compose.yml builds both (docker compose build); by hand: docker build --build-arg VARIANT=cpu -t prendas-jupyter-cpu .
#
# Why not tensorflow/tensorflow:2.21.0-gpu-jupyter: it ships cuDNN 8, TensorFlow 2.18+ needs cuDNN 9,
# so it logs "Cannot dlopen some GPU libraries" and runs on the CPU (tensorflow#81344, tensorflow/build#217).
# Here: a plain Python image plus the CUDA 12 / cuDNN 9 wheels that tensorflow[and-cuda] pulls; the host
# only provides the driver (NVIDIA Container Toolkit). Same recipe as Jupyter docker-stacks' CUDA images.
#
# Why Debian bookworm: it packages dataset-fashion-mnist and tini (versions below are bookworm's), and
# uid 1000 is free (Ubuntu 24.04 gives it to "ubuntu"). Python 3.12: inside TensorFlow 2.21's 3.10-3.13;
# nothing below names a Python version, so another python:3.X-slim-bookworm (3.10-3.13) works as BASE_IMAGE.
# Pinned by tag only: no registry digest could be checked when this was written.
ARG BASE_IMAGE=python:3.12-slim-bookworm
FROM ${BASE_IMAGE}

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

# docker-stacks convention: jovyan, uid 1000, gid 100 (users). At start, docker/start.sh gives jovyan the
# uid and gid of whoever owns the mounted repository, so this is only the default (no mount: 1000:100).
RUN useradd --create-home --no-log-init --uid 1000 --gid 100 --shell /bin/bash jovyan \
    && mkdir -p /home/jovyan/work \
    && chown 1000:100 /home/jovyan/work

# Everything above is shared by both variants (the same layers); from here on they differ.
ARG VARIANT=gpu

# Exactly the pins of requirements.txt (through requirements-notebook.txt: + JupyterLab, ipykernel, ipywidgets),
# with one name changed, never the version: tensorflow becomes
#   gpu: tensorflow[and-cuda], the plain tensorflow wheel plus the nvidia-*-cu12 wheels (CUDA 12, cuDNN 9):
#        this layer is 6.5 GB;
#   cpu: tensorflow-cpu, TensorFlow built without CUDA kernels: 1.3 GB installed (0.3 GB download) against
#        1.9 GB (0.6 GB) for the plain wheel, whose CUDA kernels are of no use without those libraries;
#        this layer is 1.6 GB.
# tensorflow/include goes: 0.3 GB of C++ headers for compiling custom ops, which nothing here does.
COPY requirements.txt requirements-notebook.txt /tmp/requirements/
RUN case "${VARIANT}" in \
        gpu) tensorflow="tensorflow[and-cuda]" ;; \
        cpu) tensorflow="tensorflow-cpu" ;; \
        *) echo "VARIANT=${VARIANT}: use gpu or cpu" >&2; exit 1 ;; \
    esac \
    && sed -i "s/^tensorflow==/${tensorflow}==/" /tmp/requirements/requirements.txt \
    && grep -F "${tensorflow}==" /tmp/requirements/requirements.txt \
    && pip install --no-cache-dir -r /tmp/requirements/requirements-notebook.txt \
    && pip check \
    && rm -rf /tmp/requirements \
        "$(python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/tensorflow/include"

# GPU only. TensorFlow's own search path misses some pip CUDA libraries (cusolver, curand, nvjitlink, nvrtc:
# "Cannot dlopen some GPU libraries", tensorflow#63362), so register every nvidia/*/lib folder with the
# dynamic linker. ld.so.conf.d survives the toolkit's ldconfig at container start; LD_LIBRARY_PATH
# would not cover processes that reset their environment. Then check the cache really has them.
# XLA (Keras 3 jit-compiles on the GPU) runs ptxas, which only the nvidia-cuda-nvcc-cu12 wheel carries: its
# folder (bin/ptxas, nvvm/libdevice), found from the installed wheel, becomes /usr/local/cuda, the CUDA root
# XLA searches by default, and /usr/local/cuda/bin goes on PATH (below). No Python version in any path.
RUN if [ "${VARIANT}" = gpu ]; then \
        site="$(python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" \
        && printf '%s\n' "${site}"/nvidia/*/lib > /etc/ld.so.conf.d/python-nvidia-wheels.conf \
        && ldconfig \
        && ldconfig -p > /tmp/ldcache.txt \
        && for lib in libcudart.so.12 libcublas.so.12 libcudnn.so.9 libcufft.so.11 libcurand.so.10 \
                      libcusolver.so.11 libcusparse.so.12 libnvJitLink.so.12 libnvrtc.so.12; do \
               grep -F "${lib} " /tmp/ldcache.txt > /dev/null || { echo "${lib} not in ld cache" >&2; exit 1; }; \
           done \
        && rm /tmp/ldcache.txt \
        && nvcc_dir="$(python -c 'import importlib.util; print(importlib.util.find_spec("nvidia.cuda_nvcc").submodule_search_locations[0])')" \
        && ln -s "${nvcc_dir}" /usr/local/cuda \
        && /usr/local/cuda/bin/ptxas --version; \
    fi

# /usr/local/cuda/bin exists in the GPU image only (above); on the CPU image's PATH it leads nowhere.
ENV PATH=${PATH}:/usr/local/cuda/bin \
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
    && { [ "${VARIANT}" != gpu ] || ptxas --version; } \
    && python -c "import tensorflow, keras, prendas; print('tensorflow', tensorflow.__version__, 'keras', keras.__version__)"

# The entrypoint: runs the command as the owner of the mounted repository (see the script).
COPY docker/start.sh /usr/local/bin/prendas-start
RUN chmod 755 /usr/local/bin/prendas-start

# HOME and USER set here, not looked up: the start script keeps them whatever uid it runs as.
# No .pyc files written into the bind-mounted repository (site-packages was compiled at install);
# unbuffered output, so training progress reaches `docker compose logs` at once.
ENV HOME=/home/jovyan \
    USER=jovyan \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
WORKDIR /home/jovyan/work
EXPOSE 8888 6006

# /api answers without a token. The server starts in seconds; the start period leaves room for a slow
# first start of a multi-gigabyte image.
HEALTHCHECK --interval=30s --timeout=10s --start-period=90s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8888/api', timeout=5)"]

# No USER: the container starts as root only for prendas-start, which gives jovyan the mounted repository's
# owner's uid and gid and runs the command as them, so what the notebook writes belongs to that owner on
# the host, whatever their uid. The server runs as root only where root owns the repository and either
# root in the container is not root on the host (rootless Docker, Podman) or ALLOW_ROOT=1 asks for it.
ENTRYPOINT ["tini", "-g", "--", "prendas-start"]
# Token: Jupyter Server reads JUPYTER_TOKEN (or JUPYTER_TOKEN_FILE); unset or empty, it makes a random one
# and prints it in the log. Never pass an empty --IdentityProvider.token: that turns authentication off.
# --allow-root: for those two cases only; prendas-start decides who runs the server, not this flag.
CMD ["jupyter", "lab", "--ip=0.0.0.0", "--port=8888", "--no-browser", "--allow-root", "--ServerApp.root_dir=/home/jovyan/work"]
