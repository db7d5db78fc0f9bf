"""Scripted Pong expert: RAM reading plus emulator look-ahead (a data generator).

Algorithm (docs/experts.md):

1. Read the RAM: our (right) paddle's y (byte 51), the ball's x and y (49, 54). The ball
   moves toward us when its x grows.
2. Once per approach of the ball, plan on a clone of the emulator:
   a. play NOOPs until the ball reaches our paddle's column: that is where it will cross
      (`intercept`);
   b. for each candidate aim ``offset`` (where on the paddle to meet the ball: the edge
      sends it off at a steep angle the built-in opponent cannot reach), replay the
      paddle controller "move to intercept + offset" until the point is decided, the
      opponent returns the ball, or a horizon runs out;
   c. keep the offset that wins the point soonest; else one that returns the ball; else
      the one that loses latest. All of this runs on a shadow emulator
      (`ditto_jax.experts.base.Emulator`); the real one is never touched.
3. Every step, move the paddle toward ``intercept + offset``. Without sticky actions the
   real rally replays the simulated one exactly. The shadow emulator starts from the real
   state with its RNG, so with sticky actions it usually does too; whenever the real game
   leaves the simulated path (paddle or ball not where the plan said), plan again.
"""

from __future__ import annotations

import numpy as np

from ditto_jax.experts.base import Emulator

# RAM addresses.
PLAYER_Y, BALL_X, BALL_Y = 51, 49, 54
# Ball x at which our paddle meets it (the ball turns back at 182-186).
HIT_X = 180


class PongExpert:
    """RAM + look-ahead Pong player; acts in the env's (minimal by default) action set."""

    def __init__(
        self,
        num_actions: int | None = None,
        seed: int | None = 0,
        offsets=tuple(range(-8, 30, 2)),
        gains=((2, 0.0), (6, 0.0), (2, 1.0), (8, 1.0)),
        horizon: int = 150,
    ):
        self.offsets = tuple(int(o) for o in offsets)
        self.gains = tuple((int(d), float(k)) for d, k in gains)
        self.horizon = int(horizon)
        self._emu = None
        self._wins = {}  # (offset, gain) -> points it won (search order)
        self._reset_state()

    def _reset_state(self):
        self._prev_bx = None
        self._prev_py = 0
        self._plan_now = (120, *self.gains[0])  # (target y, dead band, damping)
        self._planned = False  # planned during the current approach of the ball
        self._forecast = []  # simulated (paddle y, ball x, ball y) after each step
        self._forecast_t = 0  # step at which the forecast starts
        self._t = 0

    # -- the policy protocol --------------------------------------------------------
    def reset(self, env, seed):
        self._bind(env).note_action(self._noop)  # a reset leaves NOOP as the last action
        self._wins = {}  # each episode a function of its own seed only
        self._reset_state()

    def act(self, obs, env) -> int:
        emu = self._bind(env)
        ram = emu.ram()
        py, bx, by = int(ram[PLAYER_Y]), int(ram[BALL_X]), int(ram[BALL_Y])
        in_play = by > 0 and 0 < bx < 200
        dx = 0 if self._prev_bx is None else bx - self._prev_bx
        approaching = in_play and 0 < dx < 20 and bx < HIT_X
        self._prev_bx = bx
        self._t += 1

        if approaching:
            # Plan once per approach, and again whenever the game leaves the simulated
            # path (a sticky-action corner case, or an epsilon action overriding ours).
            k = self._t - self._forecast_t - 1
            on_path = 0 <= k < len(self._forecast) and self._forecast[k] == (py, bx, by)
            if not self._planned or not on_path:
                plan, self._forecast = self._plan(emu)
                self._plan_now = plan or self._plan_now
                self._forecast_t = self._t
                self._planned = True
        else:
            self._planned = False
        action = self._control(py, self._prev_py, *self._plan_now)
        self._prev_py = py
        emu.note_action(action)
        return action

    def note_action(self, action: int) -> None:
        """The env will take `action` instead (e.g. an epsilon override)."""
        if self._emu is not None:
            self._emu.note_action(action)

    # -- internals ------------------------------------------------------------------
    def _bind(self, env) -> Emulator:
        if self._emu is None or self._emu.env_ale is not env.unwrapped.ale:
            self._emu = Emulator(env)
            self._up = self._emu.index("RIGHT")  # RIGHT moves the paddle up in Pong
            self._down = self._emu.index("LEFT")
            self._noop = self._emu.index("NOOP")
        return self._emu

    def _control(self, py, prev_py, target, deadband, damping) -> int:
        # The paddle has momentum: `damping` > 0 steers by where it will be next step.
        ahead = py + damping * (py - prev_py)
        if ahead < target - deadband:
            return self._down
        if ahead > target + deadband:
            return self._up
        return self._noop

    def _intercept(self, emu: Emulator) -> int | None:
        """Ball y when it reaches our paddle's column, by playing NOOPs on the shadow."""
        for _ in range(80):
            ram = emu.sim_ram()
            if int(ram[BALL_X]) >= HIT_X:
                return int(ram[BALL_Y])
            if emu.step(self._noop) != 0.0:
                return None
        return None

    def _rollout(self, emu: Emulator, plan, path: list) -> float:
        """Score of following `plan` until the point is decided (higher is better);
        appends the simulated (paddle y, ball x, ball y) after each step to `path`."""
        prev_bx = int(emu.sim_ram()[BALL_X])
        prev_py = self._prev_py
        returned = False
        for t in range(self.horizon):
            py = int(emu.sim_ram()[PLAYER_Y])
            reward = emu.step(self._control(py, prev_py, *plan))
            prev_py = py
            ram = emu.sim_ram()
            bx = int(ram[BALL_X])
            path.append((int(ram[PLAYER_Y]), bx, int(ram[BALL_Y])))
            if reward > 0:
                return 1000.0 - t  # won the point: sooner is better
            if reward < 0:
                return -1000.0 + t  # lost it: later is less bad
            if bx < prev_bx:
                returned = True
            elif returned and bx > prev_bx:
                return 0.0  # the opponent sent it back: a rally, not a point
            prev_bx = bx
        return 0.0

    def _plan(self, emu: Emulator):
        """The (target, dead band, damping) whose simulated rally ends best, and the
        simulated path it takes."""
        state = emu.begin()
        iy = self._intercept(emu)
        if iy is None:
            return None, []
        mid = self.offsets[len(self.offsets) // 2]
        candidates = [(o, g) for g in self.gains for o in self.offsets]
        # Try first the aims that have won most points so far (a stable sort keeps the
        # default order among equals): the search usually stops at the first candidate.
        candidates.sort(key=lambda c: -self._wins.get(c, 0))
        best, best_score, best_path = None, -np.inf, []
        for offset, gain in candidates:
            emu.restore(state)
            plan, path = (iy + offset, *gain), []
            score = self._rollout(emu, plan, path)
            score -= 1e-3 * abs(offset - mid)  # ties: the middle of the paddle
            if score > best_score:
                best, best_score, best_path = plan, score, path
            if best_score >= 900.0:
                self._wins[(offset, gain)] = self._wins.get((offset, gain), 0) + 1
                break  # a win: no need to look further
        return best, best_path
