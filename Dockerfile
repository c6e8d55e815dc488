# GPU training image: the official CUDA-enabled TensorFlow image brings
# TensorFlow and CUDA; the rest comes from the requirement files.
#   docker build -t sgma-keras .
#   docker run --gpus all -v $PWD/data:/app/data -v $PWD/runs:/app/runs \
#       sgma-keras --config configs/cub.json
FROM tensorflow/tensorflow:2.21.0-gpu

WORKDIR /app
COPY requirements-base.txt ./
RUN pip install --no-cache-dir -r requirements-base.txt

COPY sgma_keras ./sgma_keras
COPY configs ./configs
COPY train.py evaluate.py export.py predict.py ./

ENV KERAS_BACKEND=tensorflow
ENTRYPOINT ["python", "train.py"]
CMD ["--config", "configs/awa.json"]
