"""Prints one of the README's two set-up commands: `run` (the first) or `test` (the second)."""

import pathlib
import re
import sys

README = pathlib.Path(__file__).resolve().parent.parent / 'README.md'


def setup_commands() -> list[str]:
  section = README.read_text().split('## Set up', 1)[1].split('\n## ', 1)[0]
  return re.findall(r'```bash\n(.*?)\n```', section, flags=re.S)


if __name__ == '__main__':
  commands = setup_commands()
  if len(commands) != 2:
    sys.exit(f'README: expected exactly two set-up commands, found {len(commands)}')
  print(commands[{'run': 0, 'test': 1}[sys.argv[1]]])
