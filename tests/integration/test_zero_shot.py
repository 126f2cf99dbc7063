"""The zero_shot evaluator: prompt-ensembled class embeddings, images labelled by the nearest one."""

import jax
import numpy as np
import pytest
from flax import linen as nn

import input_pipeline
from experiments import fashion_mnist_clip
from input_pipeline.builders import fashion_mnist_captions
from train_lib import state_init, trainer
from train_lib.errors import ConfigError
from train_lib.evaluators import zero_shot


def test_accuracy_at_k_counts_the_label_among_the_k_highest_scores():
  scores = np.array([[0.1, 0.9, 0.0], [0.5, 0.2, 0.3], [0.2, 0.3, 0.5]])
  assert zero_shot.accuracy_at_k(scores, np.array([1, 2, 0]), (1, 2, 3)) == {1: 1 / 3, 2: 2 / 3, 3: 1.0}


def _normalize(x):
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_zero_shot_equals_a_numpy_prompt_ensemble(data_dir, workdir):
  config = fashion_mnist_clip.get_config('tiny=True')
  config.data.data_dir = data_dir
  config.data.eval_split = 'test[:50]'
  config.eval_batch_size = 32  # two batches, the second padded
  config.evals = {'zero_shot': {'type': 'zero_shot', 'templates': 'held_out', 'ks': (1, 3)},
                  'custom': {'type': 'zero_shot', 'templates': ('a {} in a blurry photo',)}}
  mesh = trainer.make_mesh(config.mesh)
  with jax.set_mesh(mesh), nn.logical_axis_rules(trainer.logical_rules(config)):
    run = trainer.Run(config, workdir, mesh)
    state = state_init.init_state(run.create_state, run.rng, run.shardings)
    got = {e.name: e.run(state).scalars for e in run.evaluators}
    task = run.task
    embed = jax.jit(lambda params, batch, tower: task.embed(params, {}, batch, train=False, towers=(tower,))[0][tower],
                    static_argnums=2)
    prompts = fashion_mnist_captions.class_prompts(fashion_mnist_captions.HELD_OUT_TEMPLATES)
    per_prompt = _normalize(np.asarray(embed(state.params, {'caption': prompts.reshape(60, -1)}, 'text')))
    classes = _normalize(per_prompt.reshape(10, 6, -1).mean(axis=1))
    batches = list(input_pipeline.make_eval_batches(config.data, split='test[:50]', global_batch_size=50,
                                                    process_index=0, process_count=1))
    images = _normalize(np.asarray(embed(state.params, batches[0], 'image')))
  scores = images @ classes.T
  labels = batches[0]['label']
  ranks = (scores > scores[np.arange(50), labels][:, None]).sum(axis=1)
  assert got['zero_shot'] == pytest.approx({'accuracy': np.mean(ranks < 1), 'top3_accuracy': np.mean(ranks < 3)})
  assert 0 <= got['custom']['accuracy'] <= 1


@pytest.mark.parametrize('evals, message', [
    ({'zs': {'type': 'zero_shot', 'templates': 'heldout'}},
     r"evals.zs.templates: fashion_mnist_captions has no template set 'heldout'; valid: train, held_out"),
    ({'zs': {'type': 'zero_shot', 'templates': ('a photo',)}}, r"evals.zs.templates must be .* each with one '\{\}'"),
    ({'zs': {'type': 'zero_shot', 'text_tower': 'caption'}}, r"evals.zs.text_tower: no tower 'caption'; towers are"),
])
def test_bad_zero_shot_configs_are_one_line(evals, message, data_dir, workdir):
  config = fashion_mnist_clip.get_config('tiny=True')
  config.data.data_dir = data_dir
  config.evals = evals
  with pytest.raises(ConfigError, match=message) as error:
    trainer.train_and_evaluate(config, workdir)
  assert '\n' not in str(error.value)
