"""Scripted Breakout expert: RAM reading plus emulator look-ahead (a data generator).

Algorithm (docs/experts.md):

1. Read the RAM: the paddle's x (byte 72), the ball's x and y (99, 101; y grows
   downward, 0 when no ball is in play).
2. No ball in play (the start, or after a lost life): press FIRE to launch it,
   alternating with NOOP so that a held button cannot stall the launch.
3. Once per descent of the ball, plan on a shadow emulator
   (`ditto_jax.experts.base.Emulator`; the real one is never touched):
   a. play NOOPs until the ball reaches the paddle's height: that is where it will cross
      (`intercept`);
   b. for each candidate aim ``offset`` (where on the paddle to meet the ball, which sets
      the bounce angle) and controller gain, replay the paddle controller "move to
      intercept + offset" until the ball has come back down to the paddle's height (one
      full volley), a life is lost, or a horizon runs out;
   c. keep the candidate that loses no life and breaks the most bricks (reward) in that
      volley; ties go to the candidate nearest the paddle's middle.
4. Every step, move the paddle toward the planned x.

The game has two walls (864 points). Once both are cleared no bricks remain and the ball
bounces forever: the episode then runs until the recorder's step limit or the protocol's
108,000-frame cap.
"""

from __future__ import annotations

import numpy as np

from ditto_jax.experts.base import Emulator

# RAM addresses.
PADDLE_X, BALL_X, BALL_Y = 72, 99, 101
# Ball y at the paddle's height (the ball turns back at 170-176).
PADDLE_Y = 168
# A ball "descending toward the paddle" once it is below the bricks (y grows downward).
LOW_Y = 120


class BreakoutExpert:
    """RAM + look-ahead Breakout player; acts in the env's (minimal by default) action set."""

    def __init__(
        self,
        num_actions: int | None = None,
        seed: int | None = 0,
        offsets=tuple(range(-20, 13, 3)),
        gains=((3, 0.0), (8, 0.0), (3, 1.0)),
        horizon: int = 300,
        sticky_replan_every: int | None = None,
    ):
        self.offsets = tuple(int(o) for o in offsets)
        self.gains = tuple((int(d), float(k)) for d, k in gains)
        self.horizon = int(horizon)
        self.sticky_replan_every = sticky_replan_every
        self._emu = None
        self._reset_state()

    def _reset_state(self):
        self._prev_by = 0
        self._prev_px = 0
        self._plan_now = None  # (target x, dead band, damping)
        self._planned_at = None
        self._t = 0
        self._idle = 0  # consecutive steps without a ball in play

    # -- the policy protocol --------------------------------------------------------
    def reset(self, env, seed):
        self._bind(env).note_action(self._noop)
        self._reset_state()

    def act(self, obs, env) -> int:
        emu = self._bind(env)
        ram = emu.ram()
        px, bx, by = int(ram[PADDLE_X]), int(ram[BALL_X]), int(ram[BALL_Y])
        dy = by - self._prev_by
        self._prev_by = by
        self._t += 1

        if by == 0:  # no ball: launch it (FIRE, NOOP, FIRE, ... so it cannot stall)
            self._idle += 1
            self._plan_now = None
            self._planned_at = None
            action = self._fire if self._idle % 2 == 1 else self._noop
        else:
            self._idle = 0
            descending = 0 < dy < 40 and by < PADDLE_Y
            if descending:
                every = self.sticky_replan_every
                due = self._planned_at is None or (
                    emu.sticky and every and self._t - self._planned_at >= every
                )
                if due:
                    self._plan_now = self._plan(emu) or self._plan_now
                    self._planned_at = self._t
            else:
                self._planned_at = None
            plan = self._plan_now or (bx, *self.gains[0])
            action = self._control(px, self._prev_px, *plan)
        self._prev_px = px
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
            self._right = self._emu.index("RIGHT")
            self._left = self._emu.index("LEFT")
            self._noop = self._emu.index("NOOP")
            self._fire = self._emu.index("FIRE")
        return self._emu

    def _control(self, px, prev_px, target, deadband, damping) -> int:
        ahead = px + damping * (px - prev_px)
        if ahead < target - deadband:
            return self._right
        if ahead > target + deadband:
            return self._left
        return self._noop

    def _intercept(self, emu: Emulator) -> int | None:
        """Ball x when it comes down to the paddle's height (NOOPs on the shadow)."""
        lives = emu.sim.lives()
        for _ in range(120):
            ram = emu.sim_ram()
            if int(ram[BALL_Y]) >= PADDLE_Y:
                return int(ram[BALL_X])
            emu.step(self._noop)
            if emu.sim.lives() < lives or int(emu.sim_ram()[BALL_Y]) == 0:
                return int(ram[BALL_X])  # it got past between two steps
        return None

    def _rollout(self, emu: Emulator, plan) -> float:
        """Reward of one volley under `plan`; a lost life scores -1000."""
        lives = emu.sim.lives()
        prev_by = int(emu.sim_ram()[BALL_Y])
        prev_px = self._prev_px
        total, went_up = 0.0, False
        for _ in range(self.horizon):
            px = int(emu.sim_ram()[PADDLE_X])
            total += emu.step(self._control(px, prev_px, *plan))
            prev_px = px
            if emu.sim.lives() < lives or emu.sim.game_over():
                return -1000.0 + total
            by = int(emu.sim_ram()[BALL_Y])
            if by < prev_by:
                went_up = True
            elif went_up and by > prev_by and by >= LOW_Y:
                return total  # back down near the paddle: the volley is over
            prev_by = by
        return total

    def _plan(self, emu: Emulator):
        state = emu.begin()
        ix = self._intercept(emu)
        if ix is None:
            return None
        best, best_score = None, -np.inf
        mid = self.offsets[len(self.offsets) // 2]
        for deadband, damping in self.gains:
            for offset in self.offsets:
                emu.restore(state)
                plan = (ix + offset, deadband, damping)
                score = self._rollout(emu, plan) - 1e-3 * abs(offset - mid)
                if score > best_score:
                    best, best_score = plan, score
            if best_score > -500.0:
                break  # this gain keeps the ball; only try others when it cannot
        return best
