"""DITTO in JAX: world model, imitation in imagination, baselines, evaluation.

Layout:
  envs/      Atari environments (gymnasium + ale-py) and evaluation protocols.
  experts/   scripted experts (RAM + emulator look-ahead) and policy factories.
  data/      RLDS episode recording, reading, in-memory store and samplers.
  models/    Flax networks (encoder, decoder, RSSM, heads).
  cli.py     the single `ditto` command line.
"""

__version__ = "0.1.0"
