"""MkDocs hook: the repository's README.md becomes the site's page `readme.md`.

The guides link to `../README.md#...` (the right path on GitHub and in a clone); on the site those links
are pointed at this generated page, so one README serves both and nothing is copied into docs/. On the
site, the README's collapsible `<details>` wrapper is dropped (Markdown inside an HTML block is not
rendered), and its links to other files of the repository become plain text naming the file (those
files are not part of the site; a link to them would fail the strict build).
"""
from __future__ import annotations

import re
from pathlib import Path

from mkdocs.structure.files import File

README_LINK = re.compile(r'\]\(\.\./README\.md(#[^)\s]*)?\)')
DETAILS_TAGS = re.compile(r'^\s*</?details>\s*$|^\s*<details>\s*<summary>(.*)</summary>\s*$', re.M)
REPOSITORY_LINK = re.compile(r'(?<!!)\[([^\]]+)\]\((?!https?:|mailto:|#)([^)\s]+)\)')


def readme_markdown(config) -> str:
    text = (Path(config['config_file_path']).parent / 'README.md').read_text(encoding='utf-8')
    text = DETAILS_TAGS.sub(lambda match: f'**{match.group(1)}**' if match.group(1) else '', text)
    return REPOSITORY_LINK.sub(lambda match: f'{match.group(1)} (`{match.group(2)}`)', text)


def on_files(files, config):
    files.append(File.generated(config, 'readme.md', content=readme_markdown(config)))
    return files


def on_page_markdown(markdown, page, config, files):
    if page.file.src_uri == 'readme.md':
        return markdown
    return README_LINK.sub(lambda match: f'](readme.md{match.group(1) or ""})', markdown)
