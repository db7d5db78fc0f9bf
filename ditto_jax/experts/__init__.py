"""Policies that generate data: scripted experts (RAM + emulator look-ahead), random and
epsilon-greedy wrappers, and `make_policy` to build any of them (or a trained agent's
factory) by name. See docs/experts.md."""

from ditto_jax.experts.base import (
    EXPERTS,
    Emulator,
    EpsilonPolicy,
    Policy,
    RandomPolicy,
    expert_games,
    make_policy,
    run_episodes,
)

__all__ = [
    "EXPERTS",
    "Emulator",
    "EpsilonPolicy",
    "Policy",
    "RandomPolicy",
    "expert_games",
    "make_policy",
    "run_episodes",
]
