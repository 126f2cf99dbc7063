"""oneDNN convolutions: the same numbers as XLA's, used only where they can run."""

import os
import platform

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import kernels
from kernels import ffi_build, onednn_conv, xla_conv
from models import registry
from tests.ffi_kernels import ffi_targets, python_on_devices
from train_lib import accounting, precision

NHWC = ('NHWC', 'HWIO', 'NHWC')
# setup.cfg installs oneDNN on x86-64 Linux only; elsewhere 'auto' is XLA and there is nothing to test.
pytestmark = [pytest.mark.skipif((platform.system(), platform.machine()) != ('Linux', 'x86_64'),
                                 reason='oneDNN is installed on x86-64 Linux only'), pytest.mark.needs_gxx]


def _loss(conv, strides, padding, **kwargs):
  return lambda x, w: jnp.sum(jnp.sin(conv(x, w, strides, padding, dimension_numbers=NHWC, **kwargs)))


def test_builds_here():
  assert onednn_conv.unavailable_reason() is None


@pytest.mark.parametrize('x_shape, w_shape, strides, padding', [
    ((4, 9, 7, 3), (3, 3, 3, 5), (1, 1), 'SAME'),
    ((4, 9, 7, 3), (3, 3, 3, 5), (2, 2), ((1, 0), (2, 1))),  # asymmetric padding, odd sizes
    ((2, 6, 6, 1), (1, 1, 1, 4), (2, 2), 'VALID'),  # a strided 1x1 that skips the last row and column
    ((2, 14, 14, 8), (1, 1, 8, 16), (2, 2), 'VALID'),  # a ResNet projection
    ((2, 6, 6, 1), (3, 3, 1, 4), (2, 2), 'SAME'),  # a one-channel input, as a stem has
    ((3, 8, 8, 4), (5, 5, 4, 6), (1, 2), ((2, 2), (2, 2))),
])
def test_values_and_gradients_match_xla(x_shape, w_shape, strides, padding):
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal(x_shape, np.float32))
  w = jnp.asarray(rng.standard_normal(w_shape, np.float32))
  ours = jax.jit(jax.value_and_grad(_loss(onednn_conv.conv_general_dilated, strides, padding), argnums=(0, 1)))
  xla = jax.jit(jax.value_and_grad(_loss(jax.lax.conv_general_dilated, strides, padding), argnums=(0, 1)))
  got, want = ours(x, w), xla(x, w)
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-4)
  assert sorted(set(ffi_targets(jax.grad(_loss(onednn_conv.conv_general_dilated, strides, padding)), x, w))) == [
      'lamina_onednn_conv_backward_data', 'lamina_onednn_conv_backward_weights', 'lamina_onednn_conv_forward']


def test_bf16_kernels_are_native_exactly_where_the_cpu_multiplies_bf16():
  name = onednn_conv.bf16_implementation()
  assert (name is not None) == precision.fast_bfloat16(), name


@pytest.mark.skipif(not precision.fast_bfloat16(), reason='this CPU has no AVX-512 BF16 or AMX: bf16 goes to XLA')
@pytest.mark.parametrize('x_shape, w_shape, strides, padding', [
    ((8, 14, 14, 32), (3, 3, 32, 32), (1, 1), 'SAME'),
    ((8, 14, 14, 32), (3, 3, 32, 64), (2, 2), ((1, 1), (1, 1))),
    ((2, 6, 6, 1), (3, 3, 1, 4), (1, 1), 'SAME'),  # a stem: oneDNN's non-AMX bf16 kernel
])
def test_bf16_values_and_gradients_match_xla_in_f32(x_shape, w_shape, strides, padding):
  rng = np.random.default_rng(3)
  x = jnp.asarray(rng.standard_normal(x_shape, np.float32)).astype(jnp.bfloat16)
  w = jnp.asarray(rng.standard_normal(w_shape, np.float32) * 0.1).astype(jnp.bfloat16)
  conv = lambda impl: lambda x, w: impl(x, w, strides, padding, dimension_numbers=NHWC)
  y, vjp = jax.vjp(jax.jit(conv(onednn_conv.conv_general_dilated)), x, w)
  dy = jnp.asarray(rng.standard_normal(y.shape, np.float32))
  dx, dw = vjp(dy)
  # The output is accumulated and returned in f32, as the matmuls' are; gradients come in the operands' bf16.
  assert (y.dtype, dx.dtype, dw.dtype) == (jnp.float32, jnp.bfloat16, jnp.bfloat16)
  # XLA in f32 on the same bf16 values, the cotangent rounded to bf16 as the kernels round it.
  f32 = lambda a: a.astype(jnp.float32)
  want_y, want_vjp = jax.vjp(conv(jax.lax.conv_general_dilated), f32(x), f32(w))
  np.testing.assert_allclose(y, want_y, rtol=1e-5, atol=1e-5)
  for a, b in zip((dx, dw), want_vjp(f32(dy.astype(jnp.bfloat16)))):
    np.testing.assert_allclose(f32(a), b, rtol=1e-2, atol=1e-2 * float(jnp.abs(b).max()))
  assert sorted(set(ffi_targets(jax.grad(_loss(onednn_conv.conv_general_dilated, strides, padding), (0, 1)), x, w))) == [
      'lamina_onednn_conv_backward_data', 'lamina_onednn_conv_backward_weights', 'lamina_onednn_conv_forward']


@pytest.mark.parametrize('implementation, bf16_threads', [
    ('brgconv:avx512_core_amx', 'half'), ('brgconv:avx512_core_bf16', 'all'), (None, 'all')])
def test_only_amx_bf16_convolutions_share_the_cores(implementation, bf16_threads, monkeypatch):
  monkeypatch.setattr(onednn_conv, 'bf16_implementation', lambda: implementation)
  half = max(1, len(os.sched_getaffinity(0)) // 2)
  assert onednn_conv.threads_for(jnp.bfloat16) == {'half': half, 'all': 0}[bf16_threads]
  assert onednn_conv.threads_for(jnp.float32) == 0


@pytest.mark.parametrize('case', ['bfloat16_emulated', 'preferred_element_type', 'dilation', 'groups', 'one_d',
                                  'padded_strided_1x1'])
def test_what_onednn_does_not_run_goes_to_xla(case, monkeypatch):
  x, w = jnp.ones((2, 8, 8, 4)), jnp.ones((3, 3, 4, 4))
  kwargs, dims = {}, NHWC
  if case == 'bfloat16_emulated':
    monkeypatch.setattr(onednn_conv, 'bf16_implementation', lambda: None)
    x, w = x.astype(jnp.bfloat16), w.astype(jnp.bfloat16)
  elif case == 'preferred_element_type':
    x, w = x.astype(jnp.bfloat16), w.astype(jnp.bfloat16)
    kwargs = {'preferred_element_type': jnp.float32}
  elif case == 'dilation':
    kwargs = {'rhs_dilation': (2, 2)}
  elif case == 'groups':
    w, kwargs = jnp.ones((3, 3, 2, 4)), {'feature_group_count': 2}
  elif case == 'padded_strided_1x1':
    w = jnp.ones((1, 1, 4, 4))
  else:
    x, w, dims = jnp.ones((2, 8, 4)), jnp.ones((3, 4, 4)), ('NWC', 'WIO', 'NWC')
  strides, padding = (1,) * (x.ndim - 2), 'SAME'
  if case == 'padded_strided_1x1':
    strides, padding = (2, 2), ((1, 1), (1, 1))
  fn = lambda x, w: onednn_conv.conv_general_dilated(x, w, strides, padding, dimension_numbers=dims, **kwargs)
  assert ffi_targets(fn, x, w) == []
  want = jax.lax.conv_general_dilated(x, w, strides, padding, dimension_numbers=dims, **kwargs)
  np.testing.assert_array_equal(fn(x, w), want)


def test_vmap_matches_xla():
  rng = np.random.default_rng(1)
  x = jnp.asarray(rng.standard_normal((3, 2, 6, 6, 2), np.float32))
  w = jnp.asarray(rng.standard_normal((3, 3, 2, 4), np.float32))
  conv = lambda impl: jax.vmap(lambda x: impl(x, w, (1, 1), 'SAME', dimension_numbers=NHWC))
  np.testing.assert_allclose(conv(onednn_conv.conv_general_dilated)(x), conv(jax.lax.conv_general_dilated)(x),
                             rtol=1e-5, atol=1e-5)


def test_flops_are_counted_as_xla_convolutions_are():
  x, w = jnp.ones((8, 14, 14, 16)), jnp.ones((3, 3, 16, 32))
  ours = accounting.matmul_flops(jax.grad(_loss(onednn_conv.conv_general_dilated, (2, 2), 'SAME'), (0, 1)), x, w)
  xla = accounting.matmul_flops(jax.grad(_loss(jax.lax.conv_general_dilated, (2, 2), 'SAME'), (0, 1)), x, w)
  assert ours == xla == 3 * 2 * (8 * 7 * 7 * 32) * (3 * 3 * 16)
  # An image's gradient, which nothing uses, is neither run nor counted.
  ours = accounting.matmul_flops(jax.grad(_loss(onednn_conv.conv_general_dilated, (2, 2), 'SAME'), 1), x, w)
  xla = accounting.matmul_flops(jax.grad(_loss(jax.lax.conv_general_dilated, (2, 2), 'SAME'), 1), x, w)
  assert ours == xla == 2 * 2 * (8 * 7 * 7 * 32) * (3 * 3 * 16)


@pytest.mark.parametrize('name,kwargs', [
    ('resnet', dict(stage_sizes=(1, 1), width=8, stem='small')),
    ('cnn', dict(features=(8, 16), hidden=(16,))),
])
def test_models_train_the_same_with_either_convolution(name, kwargs):
  x = jnp.asarray(np.random.default_rng(2).uniform(size=(4, 28, 28, 1)).astype(np.float32))
  labels = jnp.arange(4)
  model = registry.get(name, num_classes=10, **kwargs)
  variables = model.init(jax.random.key(0), x, train=False)

  def loss(params):
    logits, _ = model.apply({**variables, 'params': params}, x, train=True, mutable=['batch_stats'])
    return jnp.mean(-jax.nn.log_softmax(logits)[jnp.arange(4), labels])

  results = []
  for mode in ('xla', 'auto'):
    with kernels.use(mode):
      step = jax.value_and_grad(loss)
      assert ('lamina_onednn_conv_forward' in ffi_targets(step, variables['params'])) == (mode == 'auto')
      results.append(jax.jit(step)(variables['params']))
  for a, b in zip(jax.tree.leaves(results[0]), jax.tree.leaves(results[1])):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_where_onednn_cannot_run_auto_takes_the_loop_friendly_xla_form(monkeypatch):
  monkeypatch.setattr(onednn_conv, 'why_not', lambda: 'no oneDNN here')
  with kernels.use('auto'):
    assert kernels.conv_general_dilated() is xla_conv.conv_general_dilated
  assert kernels.conv_general_dilated() is None  # 'xla': lax's own


def test_several_devices_keep_xla_convolutions():
  code = ("import kernels\n"
          "from kernels import onednn_conv, xla_conv\n"
          "with kernels.use('auto'):\n"
          "  assert kernels.conv_general_dilated() is xla_conv.conv_general_dilated\n"
          "print(onednn_conv.why_not())\n")
  stdout = python_on_devices(code, 2)
  assert 'cannot partition an FFI call over the 2 devices' in stdout


def test_a_failed_build_leaves_nothing_that_looks_built(tmp_path, monkeypatch):
  monkeypatch.setenv('LAMINA_KERNEL_CACHE', str(tmp_path / 'cache'))
  source = tmp_path / 'broken.cc'
  source.write_text('int broken( {\n')
  with pytest.raises(ffi_build.BuildError, match='compiling broken.cc failed'):
    ffi_build.load(str(source), include_dirs=[], library_dirs=[], libraries=[])
  assert os.listdir(tmp_path / 'cache') == []


def test_a_build_is_cached(tmp_path, monkeypatch):
  monkeypatch.setenv('LAMINA_KERNEL_CACHE', str(tmp_path / 'cache'))
  source = tmp_path / 'answer.cc'
  source.write_text('extern "C" int answer() { return 42; }\n')
  assert ffi_build.load(str(source), include_dirs=[], library_dirs=[], libraries=[]).answer() == 42
  built = os.listdir(tmp_path / 'cache')
  stamp = os.stat(tmp_path / 'cache' / built[0]).st_mtime_ns
  ffi_build.load(str(source), include_dirs=[], library_dirs=[], libraries=[])
  assert os.listdir(tmp_path / 'cache') == built and os.stat(tmp_path / 'cache' / built[0]).st_mtime_ns == stamp
  source.write_text('extern "C" int answer() { return 43; }\n')
  assert ffi_build.load(str(source), include_dirs=[], library_dirs=[], libraries=[]).answer() == 43


def test_an_edit_to_an_included_local_header_rebuilds(tmp_path, monkeypatch):
  monkeypatch.setenv('LAMINA_KERNEL_CACHE', str(tmp_path / 'cache'))
  header, source = tmp_path / 'value.h', tmp_path / 'value.cc'
  header.write_text('#define VALUE 1\n')
  source.write_text('#include "value.h"\nextern "C" int value() { return VALUE; }\n')
  assert ffi_build.load(str(source), include_dirs=[], library_dirs=[], libraries=[]).value() == 1
  header.write_text('#define VALUE 2\n')
  assert ffi_build.load(str(source), include_dirs=[], library_dirs=[], libraries=[]).value() == 2
