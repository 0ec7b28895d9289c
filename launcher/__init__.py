"""Launcher: the JobSpec, the backends (local, slurm, kubernetes) and the job registry."""
