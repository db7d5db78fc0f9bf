"""`ditto run` (run.py): the whole pipeline. The run plan (plan.py), the evaluation stage
(run_eval.py) and the results it writes (results.py)."""
