#!/bin/bash

# Parameters
#SBATCH --array=0-2%2
#SBATCH --cpus-per-task=64
#SBATCH --gpus-per-node=1
#SBATCH --job-name=lr-sweep
#SBATCH --mem=492032M
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --open-mode=append
#SBATCH --output=/shared/jobs/sweeps/20250101-000000-ffff/batch-%A_%a.log
#SBATCH --partition=gpu
#SBATCH --requeue
#SBATCH --signal=USR2@120
#SBATCH --time=240

# setup
# scalectl: the job's marker and directory, then the rendezvous endpoint (first
# node of the allocation, by its NodeAddr; port derived from the job id)
scalectl_job_ids=(20250101-000000-0000 20250101-000000-0001 20250101-000000-0002)
scalectl_job_dirs=(/shared/jobs/20250101-000000-0000 /shared/jobs/20250101-000000-0001 /shared/jobs/20250101-000000-0002)
export SCALECTL_JOB_ID="${scalectl_job_ids[$SLURM_ARRAY_TASK_ID]}"
export SCALECTL_JOB_DIR="${scalectl_job_dirs[$SLURM_ARRAY_TASK_ID]}"
exec >>"$SCALECTL_JOB_DIR/logs/batch.slurm.log" 2>&1
scalectl_head=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
scalectl_addr=$(scontrol show node "$scalectl_head" | sed -n 's/^ *NodeAddr=\([^ ]*\).*/\1/p' | head -n 1)
export SCALECTL_RDZV_ENDPOINT="${scalectl_addr:-$scalectl_head}:$((20000 + SLURM_JOB_ID % 10000))"

# command
export SUBMITIT_EXECUTOR=slurm
# run 0's node tasks start (rendezvous conf and per-node values added at run time):
#   /opt/venv/bin/python '<node_command>' '$SCALECTL_RDZV_ENDPOINT' /shared/jobs/20250101-000000-0000 --steps 1000 --lr 3e-4
srun --kill-on-bad-exit=1 --ntasks-per-node=1 --open-mode=append --cpus-per-task=64 --ntasks="$SLURM_JOB_NUM_NODES" --output="$SCALECTL_JOB_DIR/logs/batch.slurm.log" /opt/venv/bin/python -u -m scalectl agent --policy=slurm --job-dir="$SCALECTL_JOB_DIR"
scalectl_step_rc=$?


# teardown
exec /opt/venv/bin/python -m launcher.backends.slurm_task end "$SCALECTL_JOB_DIR" "$scalectl_step_rc"