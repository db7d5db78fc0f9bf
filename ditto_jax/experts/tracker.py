"""Screen-inferable experts: plain RAM controllers without emulator look-ahead.

The look-ahead experts (pong.py, breakout.py) choose where to hit the ball by simulating
the future, which no learner can infer from frames (SPEC §8). These controllers only
steer the paddle toward the ball's current position, read from RAM, so each action is a
function of what is on screen: a weaker expert, but one whose behaviour an imitator can
actually recover.
"""
from __future__ import annotations

from ditto_jax.experts.base import Emulator

# Pong RAM: our paddle's y, the ball's x and y (as in pong.py).
PLAYER_Y, BALL_X, BALL_Y = 51, 49, 54


class PongTracker:
    """Moves the paddle so its centre follows the ball's y; centre court when no ball.

    Pong is chaotic in these two numbers: offset 12, dead band 1 won 4 test episodes
    10-11 points up in about 3,000 steps (one seed looped in an endless rally, so record
    with a step cap); offset 11, dead band 2 lost them all.
    """

    def __init__(self, num_actions: int | None = None, seed: int | None = 0,
                 offset: int = 12, deadband: int = 1, rest_y: int = 120):
        self.offset, self.deadband, self.rest_y = int(offset), int(deadband), int(rest_y)
        self._emu = None

    def _bind(self, env) -> Emulator:
        if self._emu is None or self._emu.env_ale is not env.unwrapped.ale:
            self._emu = Emulator(env)
            self._up, self._down = self._emu.index("RIGHT"), self._emu.index("LEFT")
            self._noop = self._emu.index("NOOP")
        return self._emu

    def reset(self, env, seed):
        self._bind(env).note_action(self._noop)

    def note_action(self, action: int) -> None:
        if self._emu is not None:
            self._emu.note_action(action)

    def act(self, obs, env) -> int:
        emu = self._bind(env)
        ram = emu.ram()
        py, bx, by = int(ram[PLAYER_Y]), int(ram[BALL_X]), int(ram[BALL_Y])
        in_play = by > 0 and 0 < bx < 200
        target = (by - self.offset) if in_play else self.rest_y
        if py < target - self.deadband:
            action = self._down
        elif py > target + self.deadband:
            action = self._up
        else:
            action = self._noop
        emu.note_action(action)
        return action
