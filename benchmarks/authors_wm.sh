#!/bin/bash
# #9 item 2: the DreamerV2 recipe at the authors' image scale (sampled latents, plain MSE,
# no learned background, lr 3e-4, image weight (255/47)^2 ~ 29 for Pong), on the study's
# data, 1000 updates like the study WM. 
cd "$(dirname "$0")/.."
export PYTHONPATH="${PYTHONPATH:-$PWD}"
echo "authors_wm start $(date)" >> runs/bg.log
ditto run --preset study --workdir runs/authors_wm --stages data,wm \
  --config.paths.data=runs/study/data --config.wm.train.steps=1000 \
  --config.wm.model.latent=sample --config.wm.model.decoder_pixel_bias=false \
  --config.wm.optim.lr=3e-4 --config.wm.loss.recon=mse --config.wm.loss.image_scale=authors \
  > runs/authors_wm.log 2>&1
echo "authors_wm rc=$? $(date)" >> runs/bg.log
