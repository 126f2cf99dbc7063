r"""Label efficiency: MNIST accuracy against labels per class for each start, and linear probes.

  python -m benchmarks.label_efficiency --root=/tmp/lamina/label_efficiency \
      --supervised=/tmp/lamina/fmnist_resnet --simclr=/tmp/lamina/fmnist_simclr --mae=/tmp/lamina/fmnist_mae \
      [--labels=10,100,0] [--seeds=0,1,2] [--probes] [--json=FILE]

Fine-tunes (experiments/mnist_finetune.py) every start — the ResNet and the ViT from scratch,
the supervised Fashion-MNIST ResNet, the SimCLR ResNet and the MAE ViT (a start whose flag is
empty is skipped) — on each number of labels per class (0: all 400) with each seed, and prints
the mean test accuracy and its spread. With --probes, also the linear probes on Fashion-MNIST of
each pretrained backbone and of the same backbone left at random. Runs land under --root and a
finished one is read back, not trained again, so an interrupted sweep continues.
"""

import dataclasses
import json
import os

import numpy as np
from absl import app, flags, logging

flags.DEFINE_string('root', '/tmp/lamina/label_efficiency', 'Where the runs go.')
flags.DEFINE_string('supervised', '', 'Workdir of experiments/fashion_mnist_resnet.py.')
flags.DEFINE_string('simclr', '', 'Workdir of experiments/fashion_mnist_simclr.py.')
flags.DEFINE_string('mae', '', 'Workdir of experiments/fashion_mnist_mae.py.')
flags.DEFINE_list('labels', ['10', '100', '0'], 'Labels per class (0: the whole train split).')
flags.DEFINE_list('seeds', ['0', '1', '2'], 'Seeds: of the weights and of the labelled subset.')
flags.DEFINE_bool('probes', False, 'Also the linear probes on Fashion-MNIST.')
flags.DEFINE_string('json', None, 'Also write every run\'s accuracy here.')


@dataclasses.dataclass(frozen=True)
class Start:
  name: str
  model: str
  source: str  # a workdir, or '' for scratch


def _starts() -> list[Start]:
  f = flags.FLAGS
  starts = [Start('resnet scratch', 'resnet', ''), Start('resnet supervised', 'resnet', f.supervised),
            Start('resnet simclr', 'resnet', f.simclr), Start('vit scratch', 'vit', ''),
            Start('vit mae', 'vit', f.mae)]
  return [s for s in starts if s.source or 'scratch' in s.name]


def _accuracy(arg: str, workdir: str) -> float:
  """Test accuracy of experiments/mnist_finetune.py with `arg`, trained into `workdir` unless already there."""
  from experiments import mnist_finetune
  from train_lib import train_and_evaluate
  logging.info('mnist_finetune:%s -> %s', arg, workdir)
  return float(train_and_evaluate(mnist_finetune.get_config(arg), workdir)['eval/accuracy'])


def _slug(*parts) -> str:
  return '_'.join(str(p).replace(' ', '-') for p in parts)


def _fine_tunes(root: str) -> list[dict]:
  rows = []
  for start in _starts():
    for labels in flags.FLAGS.labels:
      for seed in flags.FLAGS.seeds:
        arg = f'model={start.model},labels={labels},seed={seed},source={start.source}'
        rows.append({'start': start.name, 'labels': int(labels), 'seed': int(seed),
                     'accuracy': _accuracy(arg, os.path.join(root, _slug(start.name, labels, seed)))})
  return rows


def _probes(root: str) -> list[dict]:
  """Each start's backbone frozen under a linear head on all of Fashion-MNIST; scratch is a random backbone."""
  rows = []
  for start in _starts():
    arg = f'model={start.model},probe=True,data=fashion_mnist,labels=0,seed=0,steps=2000,source={start.source}'
    name = start.name.replace('scratch', 'random')
    rows.append({'start': name, 'accuracy': _accuracy(arg, os.path.join(root, _slug('probe', name)))})
  return rows


def _print_table(rows: list[dict]) -> None:
  labels = sorted({r['labels'] for r in rows}, key=lambda n: n or 1e9)
  header = ['start'] + [f'{n or "all"} per class' for n in labels]
  print(' | '.join(header))
  for start in dict.fromkeys(r['start'] for r in rows):
    cells = [start]
    for n in labels:
      acc = [100 * r['accuracy'] for r in rows if r['start'] == start and r['labels'] == n]
      cells.append(f'{np.mean(acc):.1f} ± {np.std(acc):.1f} (n={len(acc)})')
    print(' | '.join(cells))


def main(argv: list[str]) -> None:
  del argv
  from benchmarks import machine
  from train_lib import compilation_cache
  compilation_cache.enable()
  root = flags.FLAGS.root
  print(machine.describe())
  rows = _fine_tunes(root)
  print('\nMNIST (5,000-digit set) test accuracy %, mean ± std over seeds:')
  _print_table(rows)
  probes = _probes(root) if flags.FLAGS.probes else []
  if probes:
    print('\nLinear probes on Fashion-MNIST (backbone frozen, all 60,000 labels), test accuracy %:')
    for row in probes:
      print(f"{row['start']} | {100 * row['accuracy']:.1f}")
  if flags.FLAGS.json:
    with open(flags.FLAGS.json, 'w') as f:
      json.dump({'fine_tunes': rows, 'probes': probes}, f, indent=1)


if __name__ == '__main__':
  app.run(main)
