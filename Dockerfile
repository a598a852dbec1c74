# raymix on Ray's GPU image: the same install steps as `make install` (Makefile: install-into),
# into the image's Python, so torch (CUDA, from PyPI) and DeepSpeed (built against it) match.
# Build and push it, then set `docker.image` in cluster.yaml to it for faster node starts:
#   docker build -t YOUR-REGISTRY/raymix:latest . && docker push YOUR-REGISTRY/raymix:latest
FROM rayproject/ray:2.60.0-py311-gpu
COPY --chown=ray:users . /home/ray/raymix
WORKDIR /home/ray/raymix
RUN sudo apt-get update -q && sudo apt-get install -yq --no-install-recommends make \
    && sudo rm -rf /var/lib/apt/lists/* \
    && make install-into PIP=pip EXTRAS=data,server
