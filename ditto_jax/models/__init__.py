"""Flax world model: encoder, decoder, RSSM, loss and training maths."""
from ditto_jax.models.networks import MLP, Decoder, Encoder, depth_to_space
from ditto_jax.models.rssm import RSSM, get_feat, sample_onehot
from ditto_jax.models.world_model import (LossConfig, WorldModel, categorical_entropy,
                                          categorical_kl, kl_balanced, make_world_model,
                                          prev_actions_onehot, preprocess, recon_weights,
                                          to_uint8, world_model_loss)
from ditto_jax.models.train_step import (TrainState, eval_step, init_train_state, make_model,
                                         make_optimizer, open_loop, set_decoder_background,
                                         train_step)
