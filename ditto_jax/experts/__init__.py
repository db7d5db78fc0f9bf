"""Policies that generate data: scripted experts (RAM + emulator look-ahead: pong.py,
breakout.py; screen-inferable trackers: tracker.py), random and epsilon-greedy play
(base.py), and `make_policy` / `run_episodes` to build and play any of them by name
(registry.py). See docs/experts.md."""
