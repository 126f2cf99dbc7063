"""The installed packages are the ones setup.cfg asks for: jax2onnx, installed with --no-deps
because it pins orbax-checkpoint<0.11.37, has not pulled lamina's orbax below its floor."""

import configparser
import importlib.metadata
import os

import pytest
from packaging.requirements import Requirement

from tests.conftest import REPO


def _install_requires() -> dict[str, Requirement]:
  config = configparser.ConfigParser()
  config.read(os.path.join(REPO, 'setup.cfg'))
  lines = [line.split('#')[0].strip() for line in config['options']['install_requires'].splitlines()]
  requirements = [Requirement(line) for line in lines if line]
  return {r.name: r for r in requirements if r.marker is None or r.marker.evaluate()}


@pytest.mark.parametrize('name', ['orbax-checkpoint', 'jax', 'flax', 'qwix'])
def test_the_installed_version_satisfies_setup_cfg(name):
  requirement = _install_requires()[name]
  installed = importlib.metadata.version(name)
  assert requirement.specifier.contains(installed, prereleases=True), (
      f'{name} {installed} does not satisfy setup.cfg ({requirement}); reinstall with pip install -e .')
