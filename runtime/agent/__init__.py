"""The node agent (``scalectl agent -- <torchrun args>``): one per node, started by every
backend through ``launcher.commands.node_command``, the only process between the
scheduler and torchrun (under Slurm it is ``srun``'s task). What differs by backend is a
policy object (``policy``: local, kubernetes; ``slurm_policy``); the loop's parts are
``agent``, ``restarts``, ``node_loss``, ``hang`` and ``preemption``.

It runs the node's elastic torchrun as a child in a process group of its own, watches
the ranks (pids from torchrun's children, global ranks from their environment, progress
from ``progress/<rank>.jsonl``) and acts:

* **crash** (a rank exits non-zero or dies of a signal): torchrun reports the first
  failed worker; the agent classifies it from the exit status and the rank log's tail
  (``classify``) into ``rank_failed``, and the restart that follows into ``restarted``
  (cause, detail, attempt, restarts left). torchrun's output is read after each scan of
  its workers (``output``), so a restart is never recorded before its failure's report.
  Restart mode ``torchrun`` (default): torchrun restarts the workers in place with
  ``--max-restarts`` = the agent's budget left, and the agent restarts torchrun itself
  only when torchrun exits with budget left (e.g. the rendezvous store died with its
  node). Mode ``agent``: ``--max-restarts=0`` and the agent restarts torchrun. In-place
  restarts skip torchrun's own start (an interpreter, ``import torch``, a new c10d
  store) and keep the rendezvous store alive for the other nodes: bench/recovery.py
  measured 5.5 s against 8.0 s from a SIGKILLed rank to the next step (6.6 against 9.1 s
  after an exception), so in place is the default. torchrun runs with
  ``TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1``: with the store shared across rounds (torch's
  default) a restarted gloo rank can read its dead peer's address from the previous
  round and fail ("connectFullMesh ... Connection refused"). Back-off: the first restart
  at once, then ``backoff_s × 2^(n-2)`` up to ``backoff_max_s`` (in torchrun mode slept
  by ``runtime.rank_exec`` before the entrypoint starts). Ranks failing with status 2
  (bad input) are not restarted.
* **hang**: a local rank without a step for longer than the learned timeout
  (``watch``) gets its Python stacks dumped to ``stacks/`` (``stacks``: py-spy, else
  faulthandler) and is SIGKILLed; torchrun (or the agent) restarts the workers.
  torchrun alone never notices: a stuck collective is a live process.
* **straggler**: a local rank whose median compute time over a window exceeds the other
  ranks' by the threshold is reported (``straggler_detected``, with the node).
* **preemption**: on SIGTERM/SIGUSR2 (SIGINT/SIGHUP: SIGTERM to the ranks) the agent
  freezes torchrun (SIGSTOP: it must neither restart the ranks when they exit 143 after
  their checkpoint nor signal them a second time) and sends the signal once, straight
  to each rank pid (under Slurm the scheduler has already signalled every rank, so it
  sends nothing: ``policy``/``slurm_policy``); the trainer finishes its step,
  checkpoints and exits; when the ranks are gone (or after ``stop_grace_s``) the agent
  kills torchrun, records ``stopped`` (with the checkpoint step) and exits 128 + signum
  (143 SIGTERM, 140 SIGUSR2): "preempted, requeue". Signals the agent was started with
  ignored stay ignored in torchrun. The agent is a child subreaper, so ranks orphaned by
  a killed torchrun stay its children and are reaped.
* **node loss**: nothing to do but survive it: the ranks of the remaining nodes fail on
  their collectives, torchrun re-forms the rendezvous at the smaller size (``--nnodes
  min:max``) and the agent records ``restarted``/``resized`` with cause ``node_lost``;
  when a node joins again torchrun grows the job back (``resized``, ``node_joined``).
  On the lost node itself, under Slurm, torchrun killed from outside is that loss: the
  agent does not restart it and exits so that the step goes on without the node.

Exit codes: 0 training finished; 1 failed (budget spent); 2 bad input (agent options,
or ranks failed with status 2); 128 + N stopped by signal N (requeue). The Slurm policy
maps them for ``srun`` (``slurm_policy.exit_code``).

At the end it writes ``summary.json`` (``summary``) and prints it. It also runs the
node's telemetry sampler (``runtime.telemetry.run_sampler``) and, with a metrics port,
the Prometheus endpoint.
"""

from __future__ import annotations

from runtime.agent.agent import NodeAgent, run_agent
from runtime.agent.classify import FailureCause, classify
from runtime.agent.config import AgentConfig
from runtime.agent.errors import AgentInputError
from runtime.agent.preemption import stop_exit_code
from runtime.agent.summary import job_summary
from runtime.agent.watch import find_stragglers, hang_timeout_s, stalled

__all__ = [
    "AgentConfig",
    "AgentInputError",
    "FailureCause",
    "NodeAgent",
    "classify",
    "find_stragglers",
    "hang_timeout_s",
    "job_summary",
    "run_agent",
    "stalled",
    "stop_exit_code",
]
