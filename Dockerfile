# GPU image: the official CUDA-enabled TensorFlow image brings TensorFlow and CUDA; the
# rest comes from requirements-base.txt, then the package itself without dependencies
# (pip would otherwise add tensorflow-cpu beside the image's TensorFlow).
#
#   docker build -t sgma-keras .
#   docker run --gpus all -v $PWD/data:/app/data -v $PWD/runs:/app/runs \
#       sgma-keras sgma-train --config configs/cub.json
#   docker run --gpus all -v $PWD/runs:/app/runs sgma-keras sgma-evaluate --config configs/cub.json
#   docker run -v $PWD/runs:/app/runs sgma-keras sgma-train --config configs/demo.json
#
# Any command runs (no entry point): sgma-train, sgma-evaluate, sgma-export, python, bash.
# It runs as the user `sgma` (uid 1000); `--user $(id -u):$(id -g)` makes files written
# into a mounted folder yours. Keras's weight downloads (~/.keras) and the dataset
# caches (~/.cache/sgma_keras) are volumes: kept between runs, not in the image.
FROM tensorflow/tensorflow:2.21.0-gpu

WORKDIR /app
COPY requirements-base.txt ./
RUN pip install --no-cache-dir -r requirements-base.txt

COPY pyproject.toml README.md ./
COPY sgma_keras ./sgma_keras
COPY configs ./configs
COPY train.py evaluate.py export.py predict.py ./
RUN pip install --no-cache-dir --no-deps . \
    && useradd --uid 1000 --create-home --shell /bin/bash sgma \
    && mkdir -p /app/runs /app/data /home/sgma/.keras /home/sgma/.cache/sgma_keras \
    && chown -R sgma:sgma /app/runs /home/sgma \
    && chmod -R a+rwX /app/runs /home/sgma

ENV KERAS_BACKEND=tensorflow HOME=/home/sgma
USER sgma
VOLUME ["/home/sgma/.keras", "/home/sgma/.cache/sgma_keras"]
CMD ["sgma-train", "--help"]
