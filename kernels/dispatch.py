"""The one point where models/ reaches a hand-written kernel, and the one switch that chooses.

  with kernels.use(config.kernels):      # train_lib does this around every run
    logits = model.apply(variables, images)

The mode is read when a function is traced, as flax's logical-axis rules are, so a jitted
function keeps the mode it was first traced under:

  'xla'   plain JAX: lax.dot_general, lax.conv_general_dilated, jax.nn.dot_product_attention.
          jax.jvp, jax.export, jax2onnx and qwix see every operation. The mode outside `use`.
  'auto'  each operation in the fastest form the backend and the run's placement allow.
          On CPU: the fused attention kernel (one device, no mask), else attention einsums with
          a hand-written backward pass; oneDNN convolutions (one device), else convolutions
          whose gradients XLA runs fast inside loops; matmuls whose weight gradient reads a
          laid-out activation (a transpose kernel); BatchNorm outputs in float32. Everywhere:
          bf16 matmuls whose backward pass multiplies bf16 too. On GPUs, cuDNN attention
          where it applies.

The two modes compute the same functions; they differ in speed and in float rounding only.
"""

import contextlib
import contextvars
from collections.abc import Callable, Iterator

import jax
import jax.numpy as jnp
from flax.typing import Dtype

from kernels import cpu_attention, cpu_transpose, einsum_attention, ffi_build, matmul, onednn_conv, xla_conv

MODES = ('auto', 'xla')
_MODE = contextvars.ContextVar('lamina_kernels', default='xla')


def check_mode(value: str) -> None:
  """Raises a one-line ValueError unless `value` is one of MODES."""
  if value not in MODES:
    raise ValueError(f'kernels={value!r} is not one of {list(MODES)}')


@contextlib.contextmanager
def use(value: str) -> Iterator[None]:
  """Traces inside this block take the kernels of mode `value`."""
  check_mode(value)
  token = _MODE.set(value)
  try:
    yield
  finally:
    _MODE.reset(token)


def mode() -> str:
  """The mode functions traced now take: 'xla' outside any `use` block."""
  return _MODE.get()


def _on_cpu() -> bool:
  return jax.default_backend() == 'cpu'


def _custom_matmul(dtype: Dtype) -> bool:
  """Whether a matmul in `dtype` takes kernels/matmul.py's backward pass: low-precision
  operands everywhere, and float32 ones on CPU, where its weight gradient is the fast one."""
  return mode() == 'auto' and (matmul.accumulation_dtype(dtype) is not None or _on_cpu())


def einsum(spec: str, x: jax.Array, w: jax.Array, dtype: Dtype) -> jax.Array:
  """einsum(spec, x, w) on operands cast to `dtype`, accumulated and returned in float32 when
  `dtype` is under 32 bits (else in `dtype`). `spec` sums no index inside a single operand."""
  # An operand already in `dtype` is passed as it is: a post-training quantized weight (qwix's
  # int8 array with its float scale, which jnp.einsum's interception multiplies) cannot be cast.
  x, w = (a if a.dtype == dtype else a.astype(dtype) for a in (x, w))
  if _custom_matmul(dtype):
    return matmul.einsum(spec, x, w)
  return jnp.einsum(spec, x, w, preferred_element_type=matmul.accumulation_dtype(dtype))


def dot_general(dtype: Dtype) -> Callable[..., jax.Array] | None:
  """For flax's `nn.Dense(dot_general=...)`: a dot of operands in `dtype` that accumulates as
  `einsum` does; None (lax's own, looked up when called) for plain float32 ones."""
  if _custom_matmul(dtype):

    def laid_out_dot(lhs, rhs, dimension_numbers, precision=None, preferred_element_type=None, **unused):
      del precision, preferred_element_type, unused  # the compute dtype decides both
      spec = matmul.einsum_spec(lhs.ndim, rhs.ndim, dimension_numbers)
      return matmul.einsum(spec, lhs.astype(dtype), rhs.astype(dtype))

    return laid_out_dot
  accumulate = matmul.accumulation_dtype(dtype)
  if accumulate is None:
    return None

  def accumulating_dot(lhs, rhs, dimension_numbers, precision=None, preferred_element_type=None, **unused):
    del preferred_element_type, unused
    return jax.lax.dot_general(lhs, rhs, dimension_numbers, precision=precision, preferred_element_type=accumulate)

  return accumulating_dot


def conv_general_dilated() -> Callable[..., jax.Array] | None:
  """For flax's `nn.Conv(conv_general_dilated=...)`: None (lax's own) but under 'auto' on CPU."""
  if mode() != 'auto' or not _on_cpu():
    return None
  return onednn_conv.conv_general_dilated if onednn_conv.why_not() is None else xla_conv.conv_general_dilated


def attention(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array | None, causal: bool) -> jax.Array:
  """softmax(q k^T / sqrt(H)) v: q [B, T, N, H], k and v [B, S, K, H] (N a multiple of K),
  mask [B, 1, T, S] bool or None; `causal` applies when `mask` is None. Returns q's dtype."""
  if mode() == 'auto' and _on_cpu():
    if cpu_attention.why_not(q, k, v, mask) is None:
      return cpu_attention.attention(q, k, v, mask, causal)
    return einsum_attention.attention(q, k, v, mask, causal)
  return jax.nn.dot_product_attention(q, k, v, mask=mask, is_causal=causal and mask is None,
                                      implementation=None if mode() == 'auto' else 'xla')


def batch_norm_dtype(dtype: Dtype) -> Dtype:
  """BatchNorm's output dtype: float32 on CPU under 'auto', else `dtype`.

  XLA:CPU's fusions compute bf16 in f32, so bf16 activations would cost a convert each way.
  """
  return jnp.float32 if mode() == 'auto' and _on_cpu() else dtype


def ffi_flops(eqn) -> float | None:
  """Model FLOPs of one of these kernels' `ffi_call` jaxpr equations; None for any other equation."""
  for count in (onednn_conv.ffi_flops, cpu_attention.ffi_flops):
    if (flops := count(eqn)) is not None:
      return flops
  return None


def describe(*, built_only: bool = False) -> str:
  """What 'auto' runs on this backend and device count, in one line. `built_only` leaves out
  the FFI kernels nothing has asked for yet (asking builds them: seconds on first use)."""
  if not _on_cpu():
    return f'{jax.default_backend()}: bf16 matmuls with a bf16 backward pass, jax.nn.dot_product_attention'
  if (placement := ffi_build.placement_reason()) is not None:
    return f'einsum attention, loop-friendly XLA convolutions (no FFI kernels: {placement})'
  parts = []
  for name, kernel in (('attention', cpu_attention), ('transpose', cpu_transpose), ('convolutions', onednn_conv)):
    if built_only and not kernel.unavailable_reason.cache_info().currsize:
      continue
    reason = kernel.unavailable_reason()
    parts.append(f'{name}: ' + (f'not built ({reason})' if reason else kernel.build_name()))
  return '; '.join(parts) or 'no FFI kernel used'
