"""Training a torch mirror the way lamina's trainer trains the original.

The same optimizer semantics as train_lib.optimizers (clip, then coupled L2 decay for
SGD/Adam or decoupled decay for AdamW, on >= 2-D weights unless the config says 'all'),
the learning rate of every step taken from lamina's own schedule function, the same
losses as train_lib.tasks (a diffusion model's: the noise schedule's tables, random timesteps
and noise, label dropout), and batches from lamina's input pipeline converted on a
thread as lamina's Feeder does for its device calls.
"""

import queue
import threading
from collections.abc import Iterator

import jax
import ml_collections
import numpy as np
import torch
import torch.nn.functional as F

import input_pipeline
from benchmarks import torch_models
from train_lib import optimizers, tasks
from train_lib.tasks.classification import ClassificationTask
from train_lib.tasks.diffusion import DiffusionTask
from train_lib.tasks.language_model import LanguageModelTask

DTYPES = ('float32', 'bfloat16')


def default_device() -> torch.device:
  """The GPU where jax trains on one and torch sees it too, else the CPU: both sides on the same chip."""
  return torch.device('cuda' if jax.default_backend() == 'gpu' and torch.cuda.is_available() else 'cpu')


def synchronize(device: torch.device) -> None:
  """Waits for the work queued on `device` (a no-op on the CPU, where every op runs before it returns)."""
  if device.type == 'cuda':
    torch.cuda.synchronize(device)


def to_torch(batch: dict[str, np.ndarray], device: torch.device | str = 'cpu') -> dict[str, torch.Tensor]:
  # Integer arrays become int64, the index type torch's losses take.
  return {k: torch.from_numpy(v.astype(np.int64) if np.issubdtype(v.dtype, np.integer) else v).to(
      device, non_blocking=True) for k, v in batch.items()}


class Prefetcher:
  """Up to `depth` batches read and converted ahead on a thread (a daemon: it ends with the process)."""

  def __init__(self, iterator: Iterator[dict], device: torch.device | str = 'cpu', depth: int = 2):
    self._iterator = iterator
    self._device = device
    self._queue: queue.Queue = queue.Queue(maxsize=depth)
    threading.Thread(target=self._run, daemon=True, name='peers-prefetch').start()

  def _run(self) -> None:
    try:
      while True:
        self._queue.put(to_torch(next(self._iterator), self._device))
    except BaseException as e:  # surfaced on the next call of next()
      self._queue.put(e)

  def next(self) -> dict[str, torch.Tensor]:
    item = self._queue.get()
    if isinstance(item, BaseException):
      raise item
    return item


def make_optimizer(model: torch.nn.Module, cfg: ml_collections.ConfigDict) -> torch.optim.Optimizer:
  """torch's counterpart of train_lib.optimizers.make_optimizer, without its clipping and schedule."""
  optimizers.validate(cfg)
  decayed = [p for p in model.parameters() if p.ndim > 1 or cfg.weight_decay_mask == 'all']
  others = [p for p in model.parameters() if not (p.ndim > 1 or cfg.weight_decay_mask == 'all')]
  groups = [{'params': ps, 'weight_decay': wd} for ps, wd in ((decayed, cfg.weight_decay), (others, 0.0)) if ps]
  if cfg.name == 'adamw':
    return torch.optim.AdamW(groups, lr=cfg.learning_rate, betas=(cfg.b1, cfg.b2), eps=cfg.eps)
  if cfg.name == 'adam':
    return torch.optim.Adam(groups, lr=cfg.learning_rate, betas=(cfg.b1, cfg.b2), eps=cfg.eps)
  momentum = cfg.momentum if cfg.name == 'momentum' else 0.0
  return torch.optim.SGD(groups, lr=cfg.learning_rate, momentum=momentum, nesterov=cfg.nesterov and momentum > 0)


def learning_rates(cfg: ml_collections.ConfigDict, total_steps: int) -> np.ndarray:
  """lamina's schedule evaluated at every step: the rate optax applies in update `i` is entry i."""
  return np.asarray(jax.vmap(optimizers.make_schedule(cfg, total_steps))(np.arange(total_steps)))


class TorchRun:
  """A torch mirror of `config`'s model with its optimizer, trained one batch at a time."""

  def __init__(self, config: ml_collections.ConfigDict, total_steps: int, dtype: str = 'float32',
               params: torch_models.Params | None = None, device: torch.device | None = None):
    if dtype not in DTYPES:
      raise ValueError(f'torch dtype {dtype!r} is not one of {list(DTYPES)}')
    self.config = config
    self.data_info = input_pipeline.dataset_info(config.data)
    lamina_task = tasks.get(config, self.data_info)
    self.is_language_model = isinstance(lamina_task, LanguageModelTask)
    self.diffusion = lamina_task if isinstance(lamina_task, DiffusionTask) else None
    if not (self.is_language_model or self.diffusion or isinstance(lamina_task, ClassificationTask)):
      raise ValueError(f'no torch counterpart of task {config.task.name!r}')
    if self.is_language_model:
      self.input_key, self.target_key = 'inputs', 'targets'
    elif self.diffusion:
      self.input_key, self.target_key = lamina_task.image_key, lamina_task.label_key
    else:
      self.input_key, self.target_key = lamina_task.input_key, lamina_task.label_key
    self.model = torch_models.from_lamina(lamina_task.model, self.data_info['features'][self.input_key]['shape'])
    if params is not None:
      if not hasattr(self.model, 'load_flax'):
        raise ValueError(f'{type(self.model).__name__} cannot start from lamina\'s parameters (no same_init)')
      self.model.load_flax(params)
    self.device = device or default_device()
    self.model.to(self.device)
    if self.diffusion:
      self.alphas_cumprod = torch.tensor(self.diffusion.schedule.alphas_cumprod, dtype=torch.float32,
                                         device=self.device)
    self.bfloat16 = dtype == 'bfloat16'
    self.optimizer = make_optimizer(self.model, config.optimizer)
    self.lrs = learning_rates(config.optimizer, total_steps)
    self.step = 0

  def _autocast(self) -> torch.autocast:
    # bf16 matmuls and convolutions over float32 parameters, like lamina's compute_dtype.
    return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bfloat16)

  def token_losses(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(float32 logits [..., classes], cross-entropy [...], weights [...]) over examples or tokens."""
    logits = self.model(batch[self.input_key]).float()
    targets = batch[self.target_key]
    losses = F.cross_entropy(logits.flatten(0, -2), targets.flatten(), reduction='none').view(targets.shape)
    weights = batch['weights'] if self.is_language_model else torch.ones_like(losses)
    return logits, losses, weights

  def diffusion_losses(self, batch: dict[str, torch.Tensor], *, train: bool,
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """[B] mean squared errors of the network's noise (or v) prediction, as train_lib/tasks/diffusion.py."""
    task = self.diffusion
    low, high = task.pixel_range
    x0 = (batch[self.input_key].float() - low) * (2.0 / (high - low)) - 1.0
    b = x0.shape[0]
    t = torch.randint(0, len(self.alphas_cumprod), (b,), device=self.device, generator=generator)
    noise = torch.randn(x0.shape, device=self.device, generator=generator)
    abar = self.alphas_cumprod[t].view(b, *[1] * (x0.ndim - 1))
    xt = abar.sqrt() * x0 + (1 - abar).sqrt() * noise
    labels = batch[self.target_key] if task.conditional else None
    if labels is not None and train and task.label_dropout:
      dropped = torch.rand(b, device=self.device, generator=generator) < task.label_dropout
      labels = torch.where(dropped, torch.full_like(labels, task.null_label), labels)
    output = self.model(xt, t, labels).float()
    target = noise if task.prediction == 'epsilon' else abar.sqrt() * noise - (1 - abar).sqrt() * x0
    return ((output - target) ** 2).flatten(1).mean(1)

  def _train_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    if self.diffusion:
      return self.diffusion_losses(batch, train=True).mean()
    _, losses, weights = self.token_losses(batch)
    return (losses * weights).sum() / weights.sum().clamp(min=1.0)

  def train_step(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """One optimizer step; returns its loss (before the update), as lamina's train/loss.

    The loss stays a device tensor: reading it would wait for the step, which lamina's
    trainer does only when it logs.
    """
    self.model.train()
    for group in self.optimizer.param_groups:
      group['lr'] = float(self.lrs[self.step])
    with self._autocast():
      loss = self._train_loss(batch)
    self.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if self.config.optimizer.grad_clip_norm > 0:
      torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.optimizer.grad_clip_norm)
    self.optimizer.step()
    self.step += 1
    return loss.detach()

  def synchronize(self) -> None:
    synchronize(self.device)

  @torch.no_grad()
  def evaluate(self) -> dict[str, float | None]:
    """eval/loss and eval/accuracy (None for a diffusion model) over the whole eval split, each
    example (or token) once; a diffusion model's timesteps and noise from one seeded generator."""
    self.model.eval()
    config = self.config
    generator = torch.Generator(self.device).manual_seed(0)
    sums = np.zeros(3)  # loss, hits, weight
    for batch in input_pipeline.make_eval_batches(config.data, split=config.data.eval_split,
                                                  global_batch_size=config.eval_batch_size,
                                                  process_index=0, process_count=1):
      batch = to_torch(batch, self.device)
      with self._autocast():
        if self.diffusion:
          losses = self.diffusion_losses(batch, train=False, generator=generator)
          hits, weights = torch.zeros_like(losses), torch.ones_like(losses)
        else:
          logits, losses, weights = self.token_losses(batch)
          hits = (logits.argmax(-1) == batch[self.target_key]).float()
      weights = weights * batch['mask'].view(-1, *[1] * (weights.ndim - 1))
      sums += [float((v * weights).sum()) for v in (losses, hits, torch.ones_like(hits))]
    return {'eval/loss': sums[0] / sums[2], 'eval/accuracy': None if self.diffusion else sums[1] / sums[2]}
