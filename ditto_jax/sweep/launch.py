"""Running `ditto sweep` jobs: `execute` (one command, output appended to its log),
`LocalBackend` (a bounded pool of subprocesses on this machine, optionally one GPU per job)
and `SlurmBackend` (one SLURM job per sweep job, through submitit).

A backend's `run(jobs, header, on_done)` runs the jobs and calls `on_done(job, returncode,
error)` for each as it finishes.
"""
import os
import queue
import shlex
import subprocess
import threading
import time

from ditto_jax.errors import DittoError


def execute(command, log_path, env=None, header="", procs=None):
    """Runs one command with stdout+stderr appended to its log; returns the exit code.

    `procs`, a set, holds the running process so an interrupted sweep can stop it.
    """
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    with open(log_path, "a") as log:
        log.write(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} {header}\n"
                  f"$ {shlex.join(command)}\n")
        log.flush()
        try:
            proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})})
        except OSError as e:  # command not found, not executable
            log.write(f"cannot start: {e}\n")
            return 127
        if procs is not None:
            procs.add(proc)
        try:
            rc = proc.wait()
        finally:
            if procs is not None:
                procs.discard(proc)
        log.write(f"=== exit code {rc}\n")
    return rc


class LocalBackend:
    """A bounded pool of subprocesses; optionally one device per running job."""

    def __init__(self, workers=1, devices=None):
        self.workers = max(1, int(workers))
        self.devices = queue.Queue()
        for i in range(self.workers):
            self.devices.put(devices[i % len(devices)] if devices else None)
        self.procs, self.stop = set(), threading.Event()

    def run(self, jobs, header, on_done):
        from concurrent.futures import ThreadPoolExecutor

        def one(job):
            if self.stop.is_set():
                return
            device = self.devices.get()
            try:
                env = dict(job.env)
                if device is not None:
                    env["CUDA_VISIBLE_DEVICES"] = str(device)
                rc = execute(job.command, job.log, env, header(job), self.procs)
            finally:
                self.devices.put(device)
            if not self.stop.is_set():
                on_done(job, rc, None)

        pool = ThreadPoolExecutor(self.workers)
        try:
            for f in [pool.submit(one, j) for j in jobs]:
                f.result()
        except KeyboardInterrupt:
            # Queued jobs never start; running ones are stopped, not left behind.
            self.stop.set()
            for proc in list(self.procs):
                proc.terminate()
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        pool.shutdown()


class SlurmBackend:
    """One SLURM job per sweep job through submitit (array-submitted per phase)."""

    def __init__(self, folder, cluster="slurm", **params):
        import submitit
        self.submitit = submitit
        try:
            self.executor = submitit.AutoExecutor(folder=os.path.join(folder, "%j"),
                                                  cluster=cluster)
        except RuntimeError as e:  # no srun/sbatch on this machine
            raise DittoError(f"Cannot use the slurm backend here ({e})", field="--backend",
                             expected="a SLURM login node, or --backend local") from e
        self.executor.update_parameters(**{k: v for k, v in params.items()
                                           if v not in (None, [], "")})

    def run(self, jobs, header, on_done):
        with self.executor.batch():
            submitted = [(j, self.executor.submit(execute, j.command, j.log, j.env, header(j)))
                         for j in jobs]
        by_id = {id(s): j for j, s in submitted}
        for s in self.submitit.helpers.as_completed([s for _, s in submitted]):
            job = by_id[id(s)]
            try:
                on_done(job, s.result(), None)
            except Exception as e:  # the SLURM job itself died (timeout, preemption, node)
                on_done(job, None, f"{type(e).__name__}: {str(e).strip()[-500:]}")

