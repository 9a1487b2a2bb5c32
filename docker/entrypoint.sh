#!/bin/sh
# The tensorflow/serving image's entrypoint contract, installed at the same path
# (/usr/bin/tf_serving_entrypoint.sh): gRPC on 8500, REST on 8501, the model MODEL_NAME under
# MODEL_BASE_PATH, then the container's args, which override any of these (the last flag wins).
# Two deliberate differences: `exec`, so SIGTERM reaches the server and it drains, and no
# --model_name/--model_base_path when the args give --model_config_file (TF Serving ignores
# them then anyway, and the default /models/model need not exist).
set -eu
MODEL_NAME=${MODEL_NAME:-model}
MODEL_BASE_PATH=${MODEL_BASE_PATH:-/models}

for arg in "$@"; do
  case "$arg" in
    --model_config_file=?* | --model_config_file | -model_config_file=?* | -model_config_file)
      exec candle-serving --port=8500 --rest_api_port=8501 "$@" ;;
  esac
done
exec candle-serving --port=8500 --rest_api_port=8501 \
  --model_name="$MODEL_NAME" --model_base_path="$MODEL_BASE_PATH/$MODEL_NAME" "$@"
