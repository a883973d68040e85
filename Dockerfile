# Grand Challenge algorithm container for autoPET/CT IV (Task 1 PET/CT, Task 2 longitudinal CT).
# Build with ./do_build.sh (linux/amd64), try it with ./do_test_run.sh, save it for upload with ./do_save.sh
# (the platform template's script names).
# The base image provides Python, CUDA 12.8, cuDNN 9 and torch 2.8 (nnunetv2 2.8.1 accepts
# torch >= 2.1.2 except 2.9.*); torch is NOT reinstalled below. BASE_IMAGE: another image with
# Python and torch (e.g. a local one where Docker Hub is out of reach).
ARG BASE_IMAGE=pytorch/pytorch:2.8.0-cuda12.8-cudnn9-runtime
FROM ${BASE_IMAGE}

# Unbuffered output: the log survives a container killed at the time limit.
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONPATH=/opt/app \
    nnUNet_raw=/tmp/nnUNet_raw \
    nnUNet_preprocessed=/tmp/nnUNet_preprocessed \
    nnUNet_results=/opt/ml/model \
    MPLCONFIGDIR=/tmp/matplotlib \
    AUTOPET_REQUIRE_MODEL=1

# Grand Challenge runs the container as a non-root user.
RUN groupadd -r user && useradd -m --no-log-init -r -g user user

WORKDIR /opt/app

# Dependencies first (a cached layer while only the code changes). The base image's torch is
# pinned as a constraint, so pip keeps it instead of pulling another multi-GB build.
COPY --chown=user:user requirements.txt /opt/app/
RUN python -c "import torch; print('torch==' + torch.__version__)" > /tmp/keep-base-torch.txt \
 && python -m pip install --requirement /opt/app/requirements.txt --constraint /tmp/keep-base-torch.txt \
 && rm /tmp/keep-base-torch.txt

# The code the entrypoint imports (test/test_inference_docker.py runs exactly these files).
COPY --chown=user:user inference.py /opt/app/
COPY --chown=user:user autopet_common /opt/app/autopet_common
COPY --chown=user:user clicks /opt/app/clicks
COPY --chown=user:user Task1 /opt/app/Task1
COPY --chown=user:user Task2 /opt/app/Task2

# Byte-compile at build time: at run time nothing is written into the code folder.
RUN python -m compileall -q /opt/app

USER user

# Model weights uploaded to Grand Challenge appear under /opt/ml/model; inference.py uses them.
# AUTOPET_REQUIRE_MODEL=1 (above): a Task 1 run without a model there (or one baked in on
# purpose, with COPY and AUTOPET_MODEL_DIR) fails with a clear error instead of silently running
# a stand-in; the phantom demo model in models/ is never copied in. To submit the model-free
# baseline on purpose: ENTRYPOINT ["python", "inference.py", "--model", "model-free"].
ENTRYPOINT ["python", "inference.py"]
