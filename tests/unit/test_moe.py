"""Mixture-of-Experts layer (models/moe.py) and routing (models/routing.py), against a naive
every-expert reference."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn
from flax.core import FrozenDict

from models import layers, moe, routing

WIDTH, MLP_DIM = 8, 16


def _layer(**fields):
  defaults = dict(num_experts=4, top_k=2, mlp_dim=MLP_DIM, kind='swiglu', use_bias=False,
                  out_init=nn.initializers.normal(0.02), dtype=jnp.float32, param_dtype=jnp.float32)
  return moe.MoeMlp(**{**defaults, **fields})


def _init(layer, x, seed=0):
  variables = layer.init(jax.random.PRNGKey(seed), x)
  params = nn.unbox(variables['params'])
  # Larger weights than the init's, so the outputs and gradients are far from zero.
  return jax.tree.map(lambda p: p * 20 if p.ndim == 3 else p * 50, params)


def _reference(layer, params, x):
  """Every expert computes every token; each token sums its top-k experts' outputs."""
  xf = x.reshape(-1, x.shape[-1])
  routed = routing.route(xf @ params['router'], layer.top_k, layer.router)
  up = jnp.einsum('nd,xdf->xnf', xf, params['up'])
  if layer.kind == 'swiglu':
    hidden = nn.silu(jnp.einsum('nd,xdf->xnf', xf, params['gate'])) * up
  else:
    hidden = layers.exact_gelu(up)
  out = jnp.einsum('xnf,xfd->xnd', hidden, params['down'])  # [experts, tokens, width]
  chosen = out[routed.experts, jnp.arange(xf.shape[0])[:, None]]  # [tokens, k, width]
  return jnp.einsum('nkd,nk->nd', chosen, routed.weights).reshape(x.shape)


def _x(shape=(3, 10, WIDTH), seed=1):
  return jax.random.normal(jax.random.PRNGKey(seed), shape)


@pytest.mark.parametrize('kind,router,top_k', [('swiglu', 'softmax_topk', 2), ('gelu', 'topk_softmax', 2),
                                               ('gelu', 'softmax_topk', 1)])
def test_dropless_equals_every_expert_reference_forward_and_gradients(kind, router, top_k):
  layer = _layer(kind=kind, router=router, top_k=top_k, dispatch='dropless')
  x = _x()
  params = _init(layer, x)
  out = layer.apply({'params': params}, x)
  np.testing.assert_allclose(out, _reference(layer, params, x), rtol=1e-5, atol=1e-6)
  cotangent = _x(seed=2)

  def loss(fn):
    return lambda p, x: jnp.sum(fn(p, x) * cotangent)

  grads = jax.grad(loss(lambda p, x: layer.apply({'params': p}, x)), argnums=(0, 1))(params, x)
  expected = jax.grad(loss(lambda p, x: _reference(layer, p, x)), argnums=(0, 1))(params, x)
  for got, want in zip(jax.tree.leaves(grads), jax.tree.leaves(expected)):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('kind', ['swiglu', 'gelu'])
def test_capacity_equals_dropless_when_nothing_is_dropped(kind):
  x = _x()
  capacity_layer = _layer(kind=kind, dispatch='capacity', capacity_factor=4.0, use_bias=True)
  params = _init(capacity_layer, x)
  params = jax.tree.map(lambda p: p + 0.1, params)  # nonzero biases
  out, sown = capacity_layer.apply({'params': params}, x, mutable=['metrics'])
  assert float(sown['metrics']['dropped'][0]) == 0.0
  dropless = capacity_layer.clone(dispatch='dropless').apply({'params': params}, x)
  np.testing.assert_allclose(out, dropless, rtol=1e-5, atol=1e-6)
  grads = [jax.grad(lambda p, l=l: jnp.sum(l.apply({'params': p}, x) ** 2))(params)
           for l in (capacity_layer, capacity_layer.clone(dispatch='dropless'))]
  for got, want in zip(*map(jax.tree.leaves, grads)):
    # Sums of terms near 30 that cancel: float32 rounding relative to the largest gradient.
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6 * np.abs(want).max())


def test_buffer_slots_rank_assignments_in_token_order():
  # 5 tokens, top-2 over 3 experts, 2 slots each.
  experts = jnp.array([[0, 1], [0, 2], [1, 0], [0, 1], [2, 1]])
  slots = np.asarray(moe.buffer_slots(experts, 3, 2))
  dropped = 3 * 2
  # expert 0: tokens 0, 1 fill it; 2 and 3 are dropped. expert 1: tokens 0, 2; 3 and 4 dropped. expert 2: 1, 4.
  np.testing.assert_array_equal(slots, [[0, 2], [1, 4], [3, dropped], [dropped, dropped], [5, dropped]])


def test_capacity_drops_exactly_the_assignments_over_capacity():
  """Hand-made router: token t goes to expert choice[t] (top-1); with capacity c, the tokens after
  an expert's first c output exactly 0 and the others the expert's output."""
  num_experts, tokens = 4, 12
  choice = np.array([0, 0, 1, 0, 2, 0, 1, 1, 1, 3, 0, 2])
  layer = _layer(num_experts=num_experts, top_k=1, dispatch='capacity', kind='gelu',
                 capacity_factor=2 * num_experts / tokens)  # capacity = 2 slots per expert
  assert moe.capacity(tokens, 1, num_experts, layer.capacity_factor) == 2
  x = _x((1, tokens, WIDTH))
  params = _init(layer, x)
  # The router reads feature 0..3 of a token shifted so the chosen expert's logit is far ahead.
  x = x.at[0, :, :num_experts].set(0.0).at[0, np.arange(tokens), choice].set(10.0)
  params['router'] = jnp.zeros_like(params['router']).at[np.arange(num_experts), np.arange(num_experts)].set(1.0)
  out, sown = layer.apply({'params': params}, x, mutable=['metrics'])
  kept = np.zeros(tokens, bool)
  for e in range(num_experts):
    kept[np.flatnonzero(choice == e)[:2]] = True
  reference = _reference(layer, params, x)
  np.testing.assert_array_equal(np.asarray(out[0, ~kept]), 0.0)
  np.testing.assert_allclose(out[0, kept], reference[0, kept], rtol=1e-5, atol=1e-6)
  assert abs(float(sown['metrics']['dropped'][0]) - (~kept).mean()) < 1e-7
  np.testing.assert_allclose(sown['metrics']['load'][0], np.bincount(choice, minlength=4) / tokens)


def test_load_balance_loss_is_minimal_for_a_uniform_router():
  uniform = routing.route(jnp.zeros((64, 8)), 2, 'softmax_topk')
  assert float(routing.load_balance_loss(uniform)) == pytest.approx(1.0, abs=1e-6)
  for seed in range(5):
    logits = 3 * jax.random.normal(jax.random.PRNGKey(seed), (64, 8))
    assert float(routing.load_balance_loss(routing.route(logits, 2, 'softmax_topk'))) > 1.0
  collapsed = routing.route(jnp.zeros((64, 8)).at[:, 0].set(10.0), 1, 'softmax_topk')
  assert float(routing.load_balance_loss(collapsed)) == pytest.approx(8.0, rel=1e-3)
  assert float(routing.z_loss(jnp.zeros((4, 8)))) == pytest.approx(np.log(8) ** 2, rel=1e-6)


def test_topk_then_softmax_weights_sum_to_one():
  logits = jax.random.normal(jax.random.PRNGKey(0), (32, 8))
  for top_k in (1, 2, 3):
    routed = routing.route(logits, top_k, 'topk_softmax')
    np.testing.assert_allclose(routed.weights.sum(-1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(routed.experts, jax.lax.top_k(logits, top_k)[1])
  switch = routing.route(logits, 1, 'softmax_topk')
  np.testing.assert_allclose(switch.weights[:, 0], jax.nn.softmax(logits).max(-1), rtol=1e-6)


@pytest.mark.parametrize('dispatch', moe.DISPATCHES)
def test_routing_is_float32_under_bf16_compute(dispatch):
  layer = _layer(dtype=jnp.bfloat16, dispatch=dispatch)
  x = _x().astype(jnp.bfloat16)
  params = _init(layer, x)
  jaxpr = jax.make_jaxpr(lambda p: layer.apply({'params': p}, x, mutable=['losses', 'metrics']))(params)
  top_k = [e for e in jaxpr.jaxpr.eqns if e.primitive.name == 'top_k']
  assert top_k and all(e.invars[0].aval.dtype == jnp.float32 for e in top_k)
  out, sown = layer.apply({'params': params}, x, mutable=['losses', 'metrics'])
  assert out.dtype == jnp.bfloat16
  assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(sown))


def test_router_noise_only_in_training_and_aux_losses_are_weighted():
  layer = _layer(router_noise=1.0, load_balance_weight=0.5, z_loss_weight=0.25)
  x = _x()
  params = _init(layer, x)
  clean = layer.apply({'params': params}, x)
  np.testing.assert_array_equal(clean, layer.apply({'params': params}, x, train=False))
  noisy, sown = layer.apply({'params': params}, x, train=True, rngs={'dropout': jax.random.PRNGKey(0)},
                            mutable=['losses', 'metrics'])
  assert not np.allclose(noisy, clean)
  np.testing.assert_allclose(sown['losses']['load_balance'][0], 0.5 * sown['metrics']['load_balance'][0])
  np.testing.assert_allclose(sown['losses']['z_loss'][0], 0.25 * sown['metrics']['z_loss'][0])


def test_expert_weights_carry_the_expert_axis():
  layer = _layer()
  variables = layer.init(jax.random.PRNGKey(0), _x())
  specs = nn.get_partition_spec(variables['params'])
  assert specs['up'] == jax.sharding.PartitionSpec('expert', 'embed', 'mlp')
  assert specs['down'] == jax.sharding.PartitionSpec('expert', 'mlp', 'embed')


def test_bad_fields_fail_at_construction():
  with pytest.raises(ValueError, match='dispatch'):
    _layer(dispatch='dense')
  with pytest.raises(ValueError, match='top_k'):
    _layer(top_k=5)


def test_flops_count_the_experts_a_token_uses():
  from train_lib import accounting
  tokens, k, experts = 24, 2, 8
  x = _x((2, tokens // 2, WIDTH))
  active = 2 * tokens * k * 3 * WIDTH * MLP_DIM  # SwiGLU: up, gate, down
  router = 2 * tokens * WIDTH * experts
  combine = 2 * tokens * k * WIDTH  # the routing-weighted sum of a token's experts' outputs
  for dispatch, factor in (('dropless', 1.0), ('capacity', 1.0), ('capacity', 2.0)):
    layer = _layer(num_experts=experts, top_k=k, dispatch=dispatch, capacity_factor=factor)
    params = _init(layer, x)
    forward = accounting.matmul_flops(lambda p: layer.apply({'params': p}, x), params)
    # Capacity buffers are computed whole: factor x the active products (12 tokens x 2 / 8 = 3 slots exactly).
    assert forward == pytest.approx(router + combine + factor * active)
    grad = jax.grad(lambda p, x: jnp.sum(layer.apply({'params': p}, x) * x), argnums=(0, 1))
    backward = accounting.matmul_flops(grad, params, x)
    assert backward == pytest.approx(3 * (router + combine + factor * active))


def _lm(**moe_fields):
  from models.transformer import TransformerLM
  return TransformerLM(vocab_size=11, width=16, num_layers=4, num_heads=2, max_len=12, mlp='swiglu',
                       moe=FrozenDict({'num_experts': 4, 'top_k': 2, 'every': 2, **moe_fields}))


def test_every_nth_transformer_block_is_moe_and_sows_its_losses_and_metrics():
  from train_lib import sown
  model = _lm(mlp_dim=8)
  tokens = jnp.arange(24).reshape(2, 12) % 11
  params = sown.strip(model.init(jax.random.PRNGKey(0), tokens, train=False))['params']
  assert sorted(params['block_1']['mlp']) == ['down', 'gate', 'router', 'up']
  assert params['block_3']['mlp']['up'].value.shape == (4, 16, 8)
  assert 'router' not in params['block_0']['mlp'] and 'router' not in params['block_2']['mlp']
  logits, state, aux_loss, metrics = sown.apply(model, {'params': params}, tokens, train=True,
                                                rngs={'dropout': jax.random.PRNGKey(1)})
  assert logits.shape == (2, 12, 11) and state == {}
  blocks = [f'block_{i}/mlp' for i in (1, 3)]
  expected = {'aux_loss'} | {f'{b}/{k}' for b in blocks for k in
                             ('dropped', 'load_balance', 'z_loss', 'load_max_over_mean', 'load_0', 'load_1',
                              'load_2', 'load_3')}
  assert set(metrics) == expected
  weighted = sum(1e-2 * metrics[f'{b}/load_balance'] + 1e-3 * metrics[f'{b}/z_loss'] for b in blocks)
  np.testing.assert_allclose(aux_loss, weighted, rtol=1e-6)
  np.testing.assert_allclose(sum(metrics[f'block_1/mlp/load_{i}'] for i in range(4)), 1.0, rtol=1e-6)
  with pytest.raises(ValueError, match='moe: unknown keys'):
    _lm(experts=3)
  with pytest.raises(ValueError, match='dispatch'):
    _lm(dispatch='dense')


@pytest.mark.parametrize('dispatch', moe.DISPATCHES)
def test_kv_cache_sampling_matches_recomputing_the_window(dispatch):
  """Greedy tokens from train_lib.sampling (prefill + cached steps) equal re-running the whole
  sequence for every token; capacity dispatch with room for every token drops none either way."""
  from train_lib import sampling
  model = _lm(dispatch=dispatch, capacity_factor=2.0)
  prompt = np.array([3, 1, 4, 1, 5])
  init = jax.jit(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, 12), jnp.int32), train=False))
  params = jax.tree.map(lambda p: p * 5, nn.unbox(init()['params']))
  generated = sampling.generate(model, params, [prompt], max_new_tokens=6, temperature=0.0)[0]
  # One compiled window of 11, zero-padded at the end: causal attention and causal drops keep the
  # padding out of every earlier position.
  apply = jax.jit(lambda params, tokens: model.apply({'params': params}, tokens, train=False))
  sequence = list(prompt)
  for _ in range(6):
    window = np.zeros((1, 11), np.int32)
    window[0, :len(sequence)] = sequence
    sequence.append(int(apply(params, window)[0, len(sequence) - 1].argmax()))
  np.testing.assert_array_equal(generated, sequence[len(prompt):])
