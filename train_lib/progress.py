"""Throughput, ETA and the console line."""

import datetime
import time


class Progress:
  """Rates over the window since the last report (the compile happened before the loop)."""

  def __init__(self, total_steps: int, start_step: int, examples_per_step: int, flops_per_step: float,
               peak_flops: float, tokens_per_example: int | None = None):
    self.total_steps = total_steps
    self.examples_per_step = examples_per_step
    self.tokens_per_example = tokens_per_example  # sequence tasks also report tokens/s
    self.flops_per_step = flops_per_step  # per device
    self.peak_flops = peak_flops  # per device
    self._last_step = start_step
    self._last_time = time.perf_counter()

  def rates(self, step: int) -> dict[str, float]:
    now = time.perf_counter()
    steps_per_sec = (step - self._last_step) / max(now - self._last_time, 1e-9)
    self._last_step, self._last_time = step, now
    rates = {'perf/steps_per_sec': steps_per_sec,
             'perf/examples_per_sec': steps_per_sec * self.examples_per_step,
             'perf/model_flops_per_step': self.flops_per_step,
             'perf/mfu': steps_per_sec * self.flops_per_step / self.peak_flops}
    if self.tokens_per_example:
      rates['perf/tokens_per_sec'] = rates['perf/examples_per_sec'] * self.tokens_per_example
    return rates

  def line(self, step: int, record: dict[str, float]) -> str:
    parts = [f'step {step}/{self.total_steps}']
    for key in sorted(record):
      # The headline train metrics and every evaluator's results.
      if key.startswith(('train/loss', 'train/accuracy')) or not key.startswith(('train/', 'perf/')):
        parts.append(f'{key} {record[key]:.4f}')
    if 'perf/steps_per_sec' in record:
      rate = record['perf/steps_per_sec']
      eta = datetime.timedelta(seconds=round((self.total_steps - step) / max(rate, 1e-9)))
      parts += [f'{rate:.1f} steps/s', f'{record["perf/examples_per_sec"]:,.0f} examples/s']
      if 'perf/tokens_per_sec' in record:
        parts.append(f'{record["perf/tokens_per_sec"]:,.0f} tokens/s')
      parts += [                f'MFU {100 * record["perf/mfu"]:.1f}%', f'ETA {eta}']
    return ' | '.join(parts)
