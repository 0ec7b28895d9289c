#!/bin/bash

# Parameters
#SBATCH --account=proj-42
#SBATCH --chdir=/shared/work
#SBATCH --constraint='h100&ib'
#SBATCH --cpus-per-task=64
#SBATCH --dependency=afterok:1234:1240_3
#SBATCH --exclusive
#SBATCH --gpus-per-node=8
#SBATCH --job-name=llama-pretrain
#SBATCH --kill-on-invalid-dep=yes
#SBATCH --mem=492032M
#SBATCH --nodes=4
#SBATCH --ntasks-per-node=1
#SBATCH --open-mode=append
#SBATCH --output=/shared/jobs/20250101-000000-abcd/logs/batch.slurm.log
#SBATCH --partition=gpu
#SBATCH --qos=high
#SBATCH --requeue
#SBATCH --signal=USR2@300
#SBATCH --time=240
# slurm.extra_sbatch
#SBATCH --reservation=big
#SBATCH --mail-type=END

# setup
# scalectl: the job's marker and directory, then the rendezvous endpoint (first
# node of the allocation, by its NodeAddr; port derived from the job id)
export SCALECTL_JOB_ID=20250101-000000-abcd
export SCALECTL_JOB_DIR=/shared/jobs/20250101-000000-abcd
scalectl_head=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
scalectl_addr=$(scontrol show node "$scalectl_head" | sed -n 's/^ *NodeAddr=\([^ ]*\).*/\1/p' | head -n 1)
export SCALECTL_RDZV_ENDPOINT="${scalectl_addr:-$scalectl_head}:$((20000 + SLURM_JOB_ID % 10000))"
module load cuda/12.4
source /shared/venv/bin/activate

# command
export SUBMITIT_EXECUTOR=slurm
# each node task starts (rendezvous conf and per-node values added at run time):
#   python3 '<node_command>' '$SCALECTL_RDZV_ENDPOINT' /shared/jobs/20250101-000000-abcd --steps 1000 --lr 3e-4
srun --kill-on-bad-exit=1 --ntasks-per-node=1 --open-mode=append --cpus-per-task=64 '--container-image=nvcr.io#nvidia/pytorch:24.05-py3' --container-mounts=/shared:/shared,/scratch:/scratch:rw --ntasks="$SLURM_JOB_NUM_NODES" --output="$SCALECTL_JOB_DIR/logs/batch.slurm.log" python3 -u -m scalectl agent --policy=slurm --job-dir="$SCALECTL_JOB_DIR"
scalectl_step_rc=$?


# teardown
exec /opt/venv/bin/python -m launcher.backends.slurm_task end "$SCALECTL_JOB_DIR" "$scalectl_step_rc"