"""Multi-process start-up: `jax.distributed` when the run spans several processes.

Explicit arguments (flags) win; otherwise JAX's own cluster detection covers Cloud
TPU VM pods and SLURM jobs. On CPU, collectives run over gloo (TCP on the
coordinator's network, 127.0.0.1 for processes on one machine).
"""

import os

import jax
from absl import logging


def _cluster_detected() -> bool:
  """A launcher that JAX can read its topology from started several processes."""
  if int(os.environ.get('SLURM_NTASKS', '1')) > 1:
    return True
  # Cloud TPU VM pods list every worker; one host lists one.
  return len([h for h in os.environ.get('TPU_WORKER_HOSTNAMES', '').split(',') if h]) > 1


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None) -> None:
  """Joins the other processes of this run, or does nothing for a single process."""
  if jax.distributed.is_initialized():
    return
  explicit = coordinator_address is not None
  if not explicit and not _cluster_detected():
    return
  # Only the CPU backend reads this; accelerators use their own collectives.
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  if explicit:
    jax.distributed.initialize(coordinator_address, num_processes, process_id)
  else:
    jax.distributed.initialize()
  logging.info('Process %d of %d, %d local / %d global devices', jax.process_index(), jax.process_count(),
               jax.local_device_count(), jax.device_count())

