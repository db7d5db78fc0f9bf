"""Screen-inferable experts: plain RAM controllers without emulator look-ahead.

The look-ahead experts (pong.py, breakout.py) choose where to hit the ball by simulating
the future, which no learner can infer from frames (SPEC §8). These controllers only
steer the paddle toward the ball's current position, read from RAM, so each action is a
function of what is on screen: a weaker expert, but one whose behaviour an imitator can
actually recover.
"""
from __future__ import annotations

import numpy as np

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


# Breakout RAM (as in breakout.py): the paddle's x, the ball's x and y (y grows downward,
# 0 when no ball is in play).
BO_PADDLE_X, BO_BALL_X, BO_BALL_Y = 72, 99, 101


class BreakoutTracker:
    """Moves the paddle under where the ball will come down; FIRE when no ball is in play.

    Each action is a function of two consecutive screens, both of which the learner sees
    (docs/experts.md): the paddle's x, the ball's x and y now, and the ball's position one
    agent step earlier (its velocity, which a single frame does not show). While the ball
    descends, its straight flight to the paddle's height (`land_y`), folded at the side
    walls, gives the landing x; otherwise the paddle follows the ball's x. The paddle's
    centre is aimed there (`centre`: RAM paddle x + centre is where its middle meets the
    ball, measured from the hits), shifted by this episode's aim (below). The paddle
    carries on about 11 px after a press, so the last action taken (which the learner is
    given too) enters the choice. No emulator look-ahead, no other memory.

    No ball on screen (the start, and after every lost life): FIRE. Holding FIRE launches
    the ball in this ALE version (measured), so the rule needs no alternation.

    Episode variety: under `ditto` (no sticky actions) Breakout is deterministic once the
    ball is launched, and the no-op starts make few different games: with one fixed aim,
    16 seeds gave 4 distinct episodes. So each episode draws its aim offset from
    `offset` +- `spread` (integers, from the seed given to `reset`; `offset` itself when
    the seed is None or spread is 0). That constant is the one thing not on the screen;
    it moves the paddle's aim by a few pixels and changes where the ball bounces.
    """

    # Ball x range between the side walls (RAM units), measured on ALE frames.
    BALL_X_MIN, BALL_X_MAX = 55, 191

    def __init__(self, num_actions: int | None = None, seed: int | None = 0,
                 centre: int = 11, offset: int = 2, land_y: int = 176,
                 predict: bool = True, push: int = 12, carry: int = 11, spread: int = 2):
        self.push, self.carry, self.spread = int(push), int(carry), int(spread)
        self.centre, self.offset = int(centre), int(offset)
        self.aim = self.offset  # this episode's offset (reset)
        self.land_y, self.predict = int(land_y), bool(predict)
        self._emu = None
        self._prev = None  # (ball x, ball y) one agent step earlier

    def _bind(self, env) -> Emulator:
        if self._emu is None or self._emu.env_ale is not env.unwrapped.ale:
            self._emu = Emulator(env)
            self._right, self._left = self._emu.index("RIGHT"), self._emu.index("LEFT")
            self._noop, self._fire = self._emu.index("NOOP"), self._emu.index("FIRE")
        return self._emu

    def reset(self, env, seed):
        self._bind(env).note_action(self._noop)
        self._prev = None
        self.aim = self.offset
        if seed is not None and self.spread > 0:
            rng = np.random.default_rng([int(seed), 0xB0])
            self.aim += int(rng.integers(-self.spread, self.spread + 1))

    def note_action(self, action: int) -> None:
        if self._emu is not None:
            self._emu.note_action(action)

    def landing_x(self, bx: int, by: int) -> float:
        """Where the ball crosses `land_y`, from its last step's velocity (its x if it is
        not descending, or no earlier screen shows it)."""
        if not self.predict or self._prev is None or self._prev[1] == 0:
            return float(bx)
        vx, vy = bx - self._prev[0], by - self._prev[1]
        if vy <= 0 or by >= self.land_y:
            return float(bx)
        x = bx + vx * (self.land_y - by) / vy
        lo, span = self.BALL_X_MIN, self.BALL_X_MAX - self.BALL_X_MIN
        u = (x - lo) % (2 * span)  # fold the straight line at the side walls
        return lo + (u if u <= span else 2 * span - u)

    def act(self, obs, env) -> int:
        emu = self._bind(env)
        ram = emu.ram()
        px, bx, by = int(ram[BO_PADDLE_X]), int(ram[BO_BALL_X]), int(ram[BO_BALL_Y])
        if by == 0:
            action = self._fire
        else:
            target = self.landing_x(bx, by) - self.centre + self.aim
            # The paddle moves about 12 px in the step of a press and 11 px more in the
            # next one (measured), so aim from where the last press still takes it.
            last = emu.last_action
            drift = self.carry * ((last == self._right) - (last == self._left))
            moves = ((self._noop, 0), (self._right, self.push), (self._left, -self.push))
            action = min(moves, key=lambda m: abs(px + drift + m[1] - target))[0]
        self._prev = (bx, by)
        emu.note_action(action)
        return action
