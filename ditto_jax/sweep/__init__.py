"""`ditto sweep` (command.py): grid files (grid.py), their expansion into jobs (jobs.py),
the local pool and SLURM backends (launch.py) and the time estimate (estimate.py)."""
