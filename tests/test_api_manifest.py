"""FFCV 1.0.2's public API against ours, module by module, from tests/data/ffcv_api_manifest.json.

The manifest is written by scripts/ffcv_api_manifest.py under FFCV 1.0.2's own interpreter (how and what it
records: that script's docstring). Here, in our environment, every FFCV module must import from the same
path and hold every public name it had, with the same kind (a numba dispatcher or C function may stand in
for a Python function); classes and functions must take the same parameters (names, order, kinds and
defaults), classes must derive from the same bases and have the same public members and protocol methods,
constants the same type and value, and a name FFCV re-exports must be the same object as at its home.

Defaults are compared as the manifest script's `describe_value` normalises them, applied here to ours:
enum members as ``Class.MEMBER``, classes and functions by qualified name without memory address (and
without module for FFCV's own, since where a name lives is checked on its own), containers item by item,
everything else by repr. Names a module imports from other libraries (numpy, typing, ...) are not checked:
no FFCV user imports ``np`` from ``ffcv.fields``; neither are submodule attributes (each submodule has its
own test).
"""
from __future__ import annotations

import importlib
import importlib.util
import json
from functools import lru_cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = ROOT / 'tests' / 'data' / 'ffcv_api_manifest.json'

DIFFERENCES_PAGE = ROOT / 'docs' / 'migrating.md'
TABLE_START, TABLE_END = '<!-- api-differences: start -->', '<!-- api-differences: end -->'


def known_differences() -> dict:
    """{(module, name): reason}: the differences from FFCV 1.0.2 we accept, read from the table of docs/migrating.md
    (the one place they are listed). `name` is a public name of the module, 'Class.member' for a member of
    a class, '__all__' for the module's __all__, or '(module)' for the module itself."""
    text = DIFFERENCES_PAGE.read_text()
    rows = text[text.index(TABLE_START) + len(TABLE_START):text.index(TABLE_END)].strip().splitlines()[2:]
    known = {}
    for row in rows:
        module, names, reason = (cell.strip() for cell in row.strip().strip('|').split('|'))
        for name in names.split(','):
            name = name.strip().strip('`')
            known[(module.strip('`'), '' if name == '(module)' else name)] = reason
    return known


KNOWN_DIFFERENCES = known_differences()


def load_tool():
    spec = importlib.util.spec_from_file_location('ffcv_api_manifest_tool', ROOT / 'scripts' / 'ffcv_api_manifest.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TOOL = load_tool()
REFERENCE = json.loads(MANIFEST.read_text())
FUNCTION_KINDS = {'function', 'numba_function', 'builtin_function'}


def family(kind: str) -> str:
    return 'function' if kind in FUNCTION_KINDS else kind


def param_text(param) -> str:
    name, kind, *default = param
    prefix = {'VAR_POSITIONAL': '*', 'VAR_KEYWORD': '**'}.get(kind, '')
    return prefix + name + (f'={default[0]}' if default else '')


def render(params) -> str:
    """A manifest signature as Python would write it: ``(a, /, b=1, *args, c, **kwargs)``."""
    parts, star = [], False
    for index, param in enumerate(params):
        kind = param[1]
        if kind == 'KEYWORD_ONLY' and not star:
            parts.append('*')
        star = star or kind in ('KEYWORD_ONLY', 'VAR_POSITIONAL')
        parts.append(param_text(param))
        if kind == 'POSITIONAL_ONLY' and (index + 1 == len(params) or params[index + 1][1] != 'POSITIONAL_ONLY'):
            parts.append('/')
    return '(' + ', '.join(parts) + ')'


def default_of(param) -> str:
    return param[2] if len(param) > 2 else '(none)'


def signature_differences(expected: dict, actual: dict) -> list:
    if expected.get('signature') is None or expected['signature'] == actual.get('signature'):
        return []
    if actual.get('signature') is None:
        return [f"signature {render(expected['signature'])}, ours unreadable ({actual.get('signature_error')})"]
    ffcv = {p[0]: p for p in expected['signature']}
    ours = {p[0]: p for p in actual['signature']}
    notes = []
    if [n for n in ffcv if n not in ours]:
        notes.append('missing ' + ', '.join(n for n in ffcv if n not in ours))
    if [n for n in ours if n not in ffcv]:
        notes.append('extra ' + ', '.join(param_text(p) for n, p in ours.items() if n not in ffcv))
    if [n for n in ffcv if n in ours] != [n for n in ours if n in ffcv]:
        notes.append('order differs')
    for name in (n for n in ffcv if n in ours):
        if ffcv[name][1] != ours[name][1]:
            notes.append(f'{name}: kind {ffcv[name][1]}, ours {ours[name][1]}')
        if ffcv[name][2:] != ours[name][2:]:
            notes.append(f'{name}: default {default_of(ffcv[name])}, ours {default_of(ours[name])}')
    return [f"signature {render(expected['signature'])}, ours {render(actual['signature'])}: " + '; '.join(notes)]


def class_member(cls, name: str):
    """The raw attribute (staticmethod, property, ...) as the first class in the MRO that has it holds it."""
    for klass in cls.__mro__:
        if name in vars(klass):
            return vars(klass)[name]
    raise AttributeError(name)


def object_differences(key, expected: dict, obj) -> dict:
    """{key: [problems]} for one described object, plus one key per class member that differs."""
    actual = TOOL.describe_object(obj)
    if family(actual['kind']) != family(expected['kind']):
        return {key: [f"is a {actual['kind']}, FFCV's is a {expected['kind']}"]}
    problems, found = signature_differences(expected, actual), {}
    if expected['kind'] == 'other':
        for field in ('type', 'value'):
            if field in expected and expected[field] != actual.get(field):
                problems.append(f"{field} {expected[field]}, ours {actual.get(field)}")
    if expected['kind'] == 'class':
        ours_mro = {TOOL.qualified_name(klass) for klass in obj.__mro__}
        problems += [f'not a subclass of {base}' for base in expected['bases'] if base not in ours_mro]
        for member, wanted in expected['members'].items():
            member_key = (key[0], f'{key[1]}.{member}')
            try:
                got = TOOL.describe_member(class_member(obj, member))
            except AttributeError:
                found[member_key] = [f"missing {wanted['kind']}"]
                continue
            notes = [] if got['kind'] == wanted['kind'] else [f"is a {got['kind']}, FFCV's is a {wanted['kind']}"]
            if 'type' in wanted and wanted['type'] != got.get('type'):
                notes.append(f"type {wanted['type']}, ours {got.get('type')}")
            notes += signature_differences(wanted, got)
            if notes:
                found[member_key] = notes
    if problems:
        found[key] = problems
    return found


def checked(info: dict) -> bool:
    if info['bound'] == 'submodule':
        return False
    return info['bound'] != 'imported' or 'same_as' in info or TOOL.is_ffcv_name(info['source'])


@lru_cache(maxsize=None)
def module_differences(module_name: str) -> dict:
    """{(module, name): [problems]} between FFCV 1.0.2's `module_name` and ours."""
    expected = REFERENCE['modules'][module_name]
    try:
        module = importlib.import_module(module_name)
    except Exception as error:
        return {(module_name, ''): [f'does not import: {type(error).__name__}: {error}']}
    found = {}
    ours_all = getattr(module, '__all__', None)  # without one, `import *` takes every public name: no loss
    if expected['all'] is not None and ours_all is not None and set(expected['all']) - set(ours_all):
        found[(module_name, '__all__')] = [f"lacks {sorted(set(expected['all']) - set(ours_all))}"]
    for name, info in expected['names'].items():
        key = (module_name, name)
        if not checked(info):
            continue
        if not hasattr(module, name):
            what = f"{info.get('type', 'object')} object" if info['kind'] == 'other' else info['kind']
            found[key] = [f'missing {what}' + (f" (FFCV's is {info['same_as']})" if 'same_as' in info else '')]
        elif 'same_as' in info:
            home_module, home_name = info['same_as'].split(':')
            try:
                home = getattr(importlib.import_module(home_module), home_name)
            except Exception:  # ours lacks the home (reported there): compare with FFCV's description of it
                found.update(object_differences(key, REFERENCE['modules'][home_module]['names'][home_name],
                                                getattr(module, name)))
                continue
            if getattr(module, name) is not home:
                found[key] = [f"not the same object as {home_module}.{home_name}"]
        else:
            found.update(object_differences(key, info, getattr(module, name)))
    return found


def test_manifest_is_ffcv_1_0_2():
    assert REFERENCE['about']['distributions']['ffcv'] == '1.0.2', REFERENCE['about']
    assert not REFERENCE['import_errors'], REFERENCE['import_errors']


@pytest.mark.parametrize('module_name', sorted(REFERENCE['modules']))
def test_module_matches_ffcv(module_name):
    problems = {key: notes for key, notes in module_differences(module_name).items() if key not in KNOWN_DIFFERENCES}
    lines = [f"  {name or '(module)'}: " + '; '.join(notes) for (_, name), notes in sorted(problems.items())]
    if problems:
        pytest.fail(f'{len(problems)} difference(s) from FFCV 1.0.2 in {module_name}:\n' + '\n'.join(lines),
                    pytrace=False)


def test_no_stale_known_differences():
    current = set()
    for module_name in REFERENCE['modules']:
        current |= set(module_differences(module_name))
    stale = sorted(set(KNOWN_DIFFERENCES) - current)
    assert not stale, f'KNOWN_DIFFERENCES entries that no longer differ (remove them): {stale}'
