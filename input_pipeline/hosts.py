"""How a global batch is split across processes: process p owns rows [p*L, (p+1)*L)."""


def local_batch_size(global_batch_size: int, process_index: int,
                     process_count: int) -> int:
  """Rows per process; raises a one-line ValueError for impossible layouts."""
  if not isinstance(process_count, int) or process_count < 1:
    raise ValueError(f'process_count must be an int >= 1, got {process_count!r}')
  if not isinstance(process_index, int) or not 0 <= process_index < process_count:
    raise ValueError(f'process_index must be in [0, {process_count}), '
                     f'got {process_index!r}')
  if (not isinstance(global_batch_size, int) or global_batch_size < 1 or
      global_batch_size % process_count):
    raise ValueError(f'global_batch_size must be a positive multiple of '
                     f'process_count={process_count}, got {global_batch_size!r}')
  return global_batch_size // process_count
