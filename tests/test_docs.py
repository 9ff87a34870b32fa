"""The guides in docs/ run as written, and the docs site builds strictly.

Each page's ```python and ```bash blocks run in order, top to bottom, as a reader following the page
would: in a fresh Python process (one namespace per page) whose working directory is an empty temporary
folder. Bash blocks run in that folder too, with this interpreter's folder first on PATH (so `ffcv` and
`python` are the installed ones). Python tracebacks name the page and its line numbers.

Two HTML comments, on the line before a fence, change what happens to a block (neither GitHub nor MkDocs
shows them):

    <!-- docs-test: skip (why) -->          the block is not run (a multi-GPU launch, a pip install)
    <!-- docs-test: file train_ddp.py -->   the block is saved as that file, for later blocks to run

Run one page by hand: ``python tests/test_docs.py docs/getting-started.md`` (in an empty folder).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / 'docs'
RUNNABLE = ('python', 'bash')
SKIP_MARK = re.compile(r'^<!--\s*docs-test:\s*skip\b.*-->$')
FILE_MARK = re.compile(r'^<!--\s*docs-test:\s*file\s+(?P<name>[\w./-]+)\s*-->$')
FENCE = re.compile(r'^(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`]*)$')
PAGE_TIME_LIMIT_S = 240  # a guide must stay quick to follow; most take well under a minute


@dataclass
class Block:
    language: str   # first word of the fence's info string ('' when none)
    code: str
    line: int       # line number (1-based) of the block's first code line in the page
    skip: bool      # marked <!-- docs-test: skip -->
    file: Optional[str] = None  # marked <!-- docs-test: file NAME -->: saved as NAME, not run

    @property
    def runs(self) -> bool:
        return self.language in RUNNABLE and not self.skip and self.file is None


def _closes(line: str, fence: str) -> bool:
    """A closing fence: only the opening fence's character, at least as many times."""
    stripped = line.strip()
    return bool(stripped) and set(stripped) == {fence[0]} and len(stripped) >= len(fence)


def extract_blocks(text: str) -> List[Block]:
    """Every fenced code block of a Markdown page, in order (fences at the start of a line)."""
    blocks, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        fence = opening.group('fence')
        previous = next((line for line in reversed(lines[:i]) if line.strip()), '')
        start = i + 1
        i = start
        while i < len(lines) and not _closes(lines[i], fence):
            i += 1
        words = opening.group('info').split()
        saved = FILE_MARK.match(previous.strip())
        blocks.append(Block(words[0].lower() if words else '', '\n'.join(lines[start:i]) + '\n', start + 1,
                            bool(SKIP_MARK.match(previous.strip())), saved.group('name') if saved else None))
        i += 1
    return blocks


def run_page(page: Path) -> None:
    """Run the page's runnable blocks in order in the current directory (one Python namespace)."""
    namespace = {'__name__': '__main__', '__file__': str(page)}
    env = dict(os.environ, PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get('PATH', '')]))
    for block in extract_blocks(page.read_text()):
        if block.file is not None:
            Path(block.file).parent.mkdir(parents=True, exist_ok=True)
            Path(block.file).write_text(block.code)
            continue
        if not block.runs:
            continue
        started = time.perf_counter()
        print(f'--- {page.name}:{block.line} ({block.language})', flush=True)
        if block.language == 'python':
            # Padding with blank lines makes tracebacks give the page's own line numbers.
            exec(compile('\n' * (block.line - 1) + block.code, str(page), 'exec'), namespace)
        else:
            subprocess.run(['bash', '-euo', 'pipefail', '-c', block.code], check=True, env=env)
        print(f'--- {page.name}:{block.line} done in {time.perf_counter() - started:.1f} s', flush=True)


# --- Tests ---------------------------------------------------------------------------------------

import pytest  # noqa: E402  (the runner above must not need pytest)

GUIDES = sorted(p for p in DOCS.glob('*.md'))


def test_block_extraction_follows_the_documented_conventions():
    page = ('text\n```python\nx = 1\n```\n<!-- docs-test: skip (needs GPUs) -->\n\n```bash\ntorchrun a\n```\n'
            '````python\n```\n````\n```text\nout\n```\n<!-- docs-test: file job/run.py -->\n```python\nprint(1)\n```\n')
    blocks = extract_blocks(page)
    assert [(b.language, b.line, b.skip, b.file, b.runs) for b in blocks] == [
        ('python', 3, False, None, True), ('bash', 8, True, None, False), ('python', 11, False, None, True),
        ('text', 14, False, None, False), ('python', 18, False, 'job/run.py', False)]
    assert blocks[0].code == 'x = 1\n' and blocks[2].code == '```\n' and blocks[4].code == 'print(1)\n'


def test_every_guide_has_code_that_runs():
    assert len(GUIDES) >= 9, 'expected index.md and the eight guides in docs/'
    for page in GUIDES:
        if page.name != 'index.md':
            assert any(b.runs for b in extract_blocks(page.read_text())), f'{page.name} runs no code'


@pytest.mark.parametrize('page', GUIDES, ids=lambda p: p.stem)
def test_guide_runs_top_to_bottom(page, tmp_path):
    started = time.perf_counter()
    result = subprocess.run([sys.executable, __file__, str(page)], cwd=tmp_path, capture_output=True, text=True,
                            timeout=PAGE_TIME_LIMIT_S, env=dict(os.environ, WANDB_MODE='offline'))
    output = result.stdout + result.stderr
    assert result.returncode == 0, f'{page.name} failed:\n{output[-6000:]}'
    print(f'{page.name}: {time.perf_counter() - started:.1f} s\n{output[-3000:]}')


API_PACKAGES = ['ffcv.loader', 'ffcv.writer', 'ffcv.reader', 'ffcv.fields', 'ffcv.fields.decoders', 'ffcv.transforms',
                'ffcv.pipeline', 'ffcv.traversal_order', 'ffcv.memory_managers', 'ffcv.remote']
NOT_IN_API_REFERENCE = {  # public names deliberately without an entry, and why
    'ffcv.writer.MIN_PAGE_SIZE': "a constant, given in DatasetWriter's page_size",
    'ffcv.writer.MAX_PAGE_SIZE': "a constant, given in DatasetWriter's page_size",
    'ffcv.pipeline.Pipeline': "FFCV's legacy linear pipeline, which no Loader uses",
    'ffcv.memory_managers.ContextClosedError': 'raised only inside the loader, never to a user',
}


def test_api_reference_covers_every_public_name():
    """Each name in the `__all__` of a documented package has a `::: path` entry (its own, or its module's)."""
    import importlib
    entries = set(re.findall(r'^::: (\S+)', '\n'.join(p.read_text() for p in (DOCS / 'api').glob('*.md')), re.M))
    missing = []
    for package in API_PACKAGES:
        module = importlib.import_module(package)
        for name in module.__all__:
            home = getattr(getattr(module, name), '__module__', None)
            paths = {f'{package}.{name}', f'{home}.{name}', home}
            if not paths & entries and f'{package}.{name}' not in NOT_IN_API_REFERENCE:
                missing.append(f'{package}.{name}')
    assert not missing, f'public names without an API entry in docs/api/: {missing}'


def test_api_differences_table_lives_in_the_migration_guide_and_the_readme_links_it():
    """One copy of the table (tests/test_api_manifest.py reads it): in docs/migrating.md, linked from the README."""
    page = (DOCS / 'migrating.md').read_text()
    assert '<!-- api-differences: start -->' in page and '<!-- api-differences: end -->' in page
    assert '## Every API difference, checked' in page
    readme = (ROOT / 'README.md').read_text()
    assert 'docs/migrating.md#every-api-difference-checked' in readme
    assert '| module | name | why |' not in readme


def test_multi_model_example_trains_the_same_models_both_ways(tmp_path):
    """examples/multi_model/train_several.py (the guide's measurements), tiny: sharing the loader gives every
    model the same batches and steps as training it alone, so the trained models are the same."""
    out = tmp_path / 'result.json'
    script = ROOT / 'examples' / 'multi_model' / 'train_several.py'
    result = subprocess.run([sys.executable, str(script), '--models', '2', '--images', '256', '--test-images', '128',
                             '--epochs', '1', '--repeats', '1', '--json', str(out)],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(out.read_text())
    assert report['test_accuracy_shared'] == report['test_accuracy_one_after_another']
    assert report['shared_loader_s'] > 0 and report['one_after_another_s'] > 0


def test_site_builds_strictly(tmp_path):
    """`mkdocs build --strict` (any warning fails: broken links, anchors, pages outside the nav, docstrings)."""
    if shutil.which('mkdocs', path=str(Path(sys.executable).parent)) is None:
        pytest.skip('mkdocs is not installed (pip install -e ".[docs]")')
    result = subprocess.run([str(Path(sys.executable).parent / 'mkdocs'), 'build', '--strict', '--site-dir',
                             str(tmp_path / 'site')], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / 'site' / 'api' / 'loader.html').exists()


if __name__ == '__main__':
    for argument in sys.argv[1:]:
        run_page(Path(argument).resolve())
