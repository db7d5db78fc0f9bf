"""Atari environments (gymnasium + ale-py) under named evaluation protocols."""

from ditto_jax.envs.atari import (
    GAMES,
    PROTOCOLS,
    Protocol,
    action_meanings,
    ale_id,
    canonical_game,
    get_protocol,
    known_games,
    make_env,
    num_actions,
    rom_id,
)
from ditto_jax.envs.vector import AtariVector, make_vector_env

__all__ = [
    "GAMES",
    "PROTOCOLS",
    "Protocol",
    "AtariVector",
    "action_meanings",
    "ale_id",
    "canonical_game",
    "get_protocol",
    "known_games",
    "make_env",
    "make_vector_env",
    "num_actions",
    "rom_id",
]
