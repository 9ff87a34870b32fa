"""Record the public API of an installed `ffcv` package as JSON (the reference for tests/test_api_manifest.py).

Run it with the interpreter of FFCV 1.0.2 (built by ``bash scripts/setup_ffcv_anchor.sh``), isolated so that
``import ffcv`` cannot find this repository's package::

    /root/.venvs/ffcv-anchor/bin/python -I scripts/ffcv_api_manifest.py --out tests/data/ffcv_api_manifest.json

(``-I`` keeps the script's folder, the working directory, PYTHONPATH and the user site off ``sys.path``; the
script refuses to run if the `ffcv` it imports lies inside this repository. It unsets
$FFCV_DEFAULT_CACHE_PROCESS, which changes a default of ``Loader``, before importing ffcv.) The output is
deterministic: the same installation gives the same bytes.

What it records
---------------
* Every module of the package, found like ``pkgutil.walk_packages`` does (sub-packages recursed into,
  compiled extension modules such as ``ffcv._libffcv`` included) but without importing the packages
  listed in `SKIPPED`, whose reasons go into the manifest. Every module is imported before any is
  described, so a package's submodule attributes do not depend on the walk order.
* For each module: whether it is a package, a source module or a compiled extension, its ``__all__``
  (or null), and each public name (no leading underscore) in ``dir(module)``, with

  - ``kind``: ``module``, ``class``, ``function``, ``numba_function`` (a numba dispatcher),
    ``builtin_function`` (C / C-extension callable) or ``other`` (then ``type``, the qualified name of its
    type, and ``value``, its repr, for plain scalars, tuples of them and NumPy dtypes, except the
    machine-dependent constants in `VARYING`);
  - ``bound``: how the name got into the module: ``defined`` (assigned, ``def``, ``class`` at top level
    of the source), ``imported`` (an ``import`` statement of the source), ``submodule`` (a child module
    that the import system set as attribute) or ``dynamic`` (none of these: star imports, compiled
    modules); ``source`` is the module it comes from (the ``import`` statement's module, else the
    object's ``__module__``), or null when unknown;
  - ``signature`` for classes (what calling the class accepts: ``inspect.signature(cls)``, without
    ``self``; none for Enum classes) and for functions (numba functions: their ``py_func``): a list of
    ``[name, kind]`` or ``[name, kind, default]`` (kind as ``inspect.Parameter.kind`` names it; default
    normalised by `describe_value`), null with ``signature_error`` when Python cannot tell;
  - for classes, ``bases`` (normalised names of the direct base classes) and ``members``: the public
    attributes, and the protocol methods in `PROTOCOL_METHODS`, that the class or one of its FFCV base
    classes defines (members inherited from other libraries, e.g. ``threading.Thread``, are left out),
    each with its kind (``method``, ``classmethod``, ``staticmethod``, ``property``, ``numba_function``,
    ``attribute``) and, for the callables, its signature (with ``self`` / ``cls``).

  An FFCV class or function is described in full once, at its home (where its ``__module__`` and
  ``__name__`` say it was defined); every other module that holds it records ``kind``, ``bound``,
  ``source`` and ``same_as``: ``"module:name"`` of the home. Names imported from other libraries (numpy, typing, torch,
  ...) record only ``kind``, ``bound`` and ``source``.

Annotations are not recorded. Defaults are normalised (see `describe_value`) so that the output is
deterministic (no memory addresses) and comparable across two implementations; the test imports this file
by path and describes its own package with the same functions. Output: JSON, sorted keys, indent 1 with
each list on one line.
"""
from __future__ import annotations

import argparse
import ast
import enum
import importlib
import importlib.machinery
import inspect
import json
import os
import pkgutil
import platform
import re
import sys
from pathlib import Path
from typing import Dict, List, Optional

PACKAGE = 'ffcv'
REPO = Path(__file__).resolve().parent.parent

# Module prefixes that are never imported, with the reason recorded in the manifest.
SKIPPED = {
    'ffcv.benchmarks': "FFCV's own micro-benchmark harness, not library API: importing ffcv.benchmarks.__main__ "
                       'parses sys.argv and runs every benchmark (and needs pandas, not an ffcv dependency); '
                       'the suites write temporary datasets and read test images that are not installed',
}

# Constants whose value depends on the machine or the environment: their value is not recorded.
VARYING = {
    'ffcv.loader.epoch_iterator:IS_CUDA': 'torch.cuda.is_available() where it is imported',
    'ffcv.loader.loader:DEFAULT_OS_CACHE': 'set from $FFCV_DEFAULT_CACHE_PROCESS',
    'ffcv.loader.loader:DEFAULT_PROCESS_CACHE': 'set from $FFCV_DEFAULT_CACHE_PROCESS',
}

# Underscore methods that are part of a class's public behaviour (len(), iteration, calls, with-blocks, ...).
PROTOCOL_METHODS = ('__call__', '__contains__', '__enter__', '__exit__', '__getitem__', '__iter__', '__len__',
                    '__next__', '__setitem__')

SCALARS = (bool, int, float, str, bytes, type(None))
ADDRESS = re.compile(r' at 0x[0-9a-fA-F]+')


def qualified_name(obj) -> str:
    """``ffcv:Qualname`` for FFCV's own objects, ``module.Qualname`` for everything else.

    The module of an FFCV object is left out: where a name lives is checked by the name checks, so a class
    used as a default or base compares equal wherever the implementation defines it.
    """
    module = getattr(obj, '__module__', None) or '?'
    name = getattr(obj, '__qualname__', None) or getattr(obj, '__name__', None) or type(obj).__qualname__
    if is_ffcv_name(module):
        return f'{PACKAGE}:{name}'
    return f'{module}.{name}'


def is_numba_function(obj) -> bool:
    return type(obj).__module__.startswith('numba') and hasattr(obj, 'py_func')


def describe_value(value) -> str:
    """A default value (or constant) as a string, normalised so that equal meaning gives equal text.

    * enum members: ``ClassQualname.MEMBER`` (not the repr, which holds the member's value);
    * classes: ``<class NAME>``, functions, numba dispatchers and builtins: ``<function NAME>``, with NAME from
      `qualified_name` (no memory address, no module for FFCV's own objects);
    * tuples, lists and dicts: the same rules applied to their items;
    * anything else: ``repr(value)`` with `` at 0x...`` addresses removed (e.g. ``<object object>``).
    """
    if isinstance(value, enum.Enum):
        return f'{type(value).__qualname__}.{value.name}'
    if isinstance(value, type):
        return f'<class {qualified_name(value)}>'
    if inspect.isroutine(value) or is_numba_function(value):
        return f'<function {qualified_name(value)}>'
    if isinstance(value, tuple):
        items = [describe_value(item) for item in value]
        return '(' + ', '.join(items) + (',)' if len(items) == 1 else ')')
    if isinstance(value, list):
        return '[' + ', '.join(describe_value(item) for item in value) + ']'
    if isinstance(value, dict):
        return '{' + ', '.join(f'{describe_value(k)}: {describe_value(v)}' for k, v in value.items()) + '}'
    return ADDRESS.sub('', repr(value))


def describe_signature(obj) -> dict:
    """``{'signature': [[name, kind(, default)], ...]}``, or a null signature and the error."""
    try:
        signature = inspect.signature(obj)
    except (TypeError, ValueError) as error:
        return {'signature': None, 'signature_error': f'{type(error).__name__}: {error}'}
    params = []
    for param in signature.parameters.values():
        entry = [param.name, param.kind.name]
        if param.default is not inspect.Parameter.empty:
            entry.append(describe_value(param.default))
        params.append(entry)
    return {'signature': params}


def object_kind(obj) -> str:
    if inspect.ismodule(obj):
        return 'module'
    if isinstance(obj, type):
        return 'class'
    if is_numba_function(obj):
        return 'numba_function'
    if inspect.isfunction(obj):
        return 'function'
    if inspect.isroutine(obj):
        return 'builtin_function'
    return 'other'


def describe_callable(obj, kind: str) -> dict:
    if kind == 'numba_function':
        return describe_signature(obj.py_func)
    return describe_signature(obj)


def describe_member(raw) -> dict:
    """One class attribute, as found in the defining class's ``__dict__``."""
    if isinstance(raw, staticmethod):
        return {'kind': 'staticmethod', **describe_callable(raw.__func__, object_kind(raw.__func__))}
    if isinstance(raw, classmethod):
        return {'kind': 'classmethod', **describe_callable(raw.__func__, object_kind(raw.__func__))}
    if isinstance(raw, property):
        return {'kind': 'property'}
    kind = object_kind(raw)
    if kind in ('function', 'builtin_function'):
        return {'kind': 'method', **describe_callable(raw, kind)}
    if kind == 'numba_function':
        return {'kind': kind, **describe_callable(raw, kind)}
    return {'kind': 'attribute', 'type': qualified_name(type(raw))}


def is_ffcv_name(module_name) -> bool:
    return isinstance(module_name, str) and (module_name == PACKAGE or module_name.startswith(PACKAGE + '.'))


def is_ffcv_object(obj) -> bool:
    return is_ffcv_name(getattr(obj, '__module__', None))


def describe_class(cls) -> dict:
    """Signature, direct bases and the members that FFCV classes in the MRO define (first one wins)."""
    if issubclass(cls, enum.Enum):  # Enum's own call signature, which changes with the Python version
        signature = {'signature': None, 'signature_error': 'an Enum: called as Cls(value)'}
    else:
        signature = describe_signature(cls)
    info = {'kind': 'class', **signature, 'bases': [qualified_name(base) for base in cls.__bases__]}
    members = {}
    for klass in cls.__mro__:
        if not is_ffcv_object(klass):
            continue
        for name, raw in vars(klass).items():
            if name in members or (name.startswith('_') and name not in PROTOCOL_METHODS):
                continue
            members[name] = describe_member(raw)
    info['members'] = members
    return info


def describe_object(obj, place: str = '') -> dict:
    """Kind and, as the kind allows, signature, members or type and value of one module attribute.

    The value is recorded for scalars, tuples of scalars and NumPy dtypes (the file format's record
    types), unless `place` (``module:name``) is in `VARYING`.
    """
    kind = object_kind(obj)
    if kind == 'class':
        return describe_class(obj)
    if kind == 'module':
        return {'kind': kind}
    if kind != 'other':
        return {'kind': kind, **describe_callable(obj, kind)}
    info = {'kind': kind, 'type': qualified_name(type(obj))}
    import numpy
    plain = isinstance(obj, SCALARS + (numpy.dtype,)) or (
        isinstance(obj, tuple) and all(isinstance(x, SCALARS) for x in obj))
    if plain and len(repr(obj)) <= 1000 and place not in VARYING:
        info['value'] = describe_value(obj)
    return info


def top_level_bindings(module) -> Dict[str, dict]:
    """Names that a source module's top-level statements bind: ``{name: {'bound': ..., 'source': ...}}``.

    Statements nested in ``if`` / ``try`` / ``with`` / ``for`` blocks count; bodies of functions and classes
    do not. Relative imports are resolved against the module's package.
    """
    try:
        tree = ast.parse(inspect.getsource(module))
    except (OSError, TypeError, SyntaxError):
        return {}
    package = module.__name__ if hasattr(module, '__path__') else module.__name__.rpartition('.')[0]
    bindings = {}

    def visit(statements):
        for node in statements:
            if isinstance(node, ast.Import):
                for alias in node.names:
                    name = alias.asname or alias.name.partition('.')[0]
                    source = alias.name if alias.asname else alias.name.partition('.')[0]
                    bindings[name] = {'bound': 'imported', 'source': source}
            elif isinstance(node, ast.ImportFrom):
                source = node.module or ''
                if node.level:
                    base = package.rsplit('.', node.level - 1)[0] if node.level > 1 else package
                    source = f'{base}.{source}' if source else base
                for alias in node.names:
                    if alias.name != '*':
                        bindings[alias.asname or alias.name] = {'bound': 'imported', 'source': source}
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                bindings[node.name] = {'bound': 'defined', 'source': module.__name__}
            elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for target in targets:
                    for leaf in ast.walk(target):
                        if isinstance(leaf, ast.Name):
                            bindings[leaf.id] = {'bound': 'defined', 'source': module.__name__}
            for field in ('body', 'orelse', 'finalbody', 'handlers'):
                if isinstance(node, (ast.If, ast.Try, ast.With, ast.For, ast.While, ast.ExceptHandler)):
                    visit(getattr(node, field, []) or [])

    visit(tree.body)
    return bindings


def module_file_kind(module) -> str:
    if hasattr(module, '__path__'):
        return 'package'
    if isinstance(getattr(module, '__loader__', None), importlib.machinery.ExtensionFileLoader):
        return 'extension'
    return 'source'


def describe_module(module, homes: Dict[int, str]) -> dict:
    """File kind, ``__all__`` and every public name of `module`.

    `homes` maps ``id(obj)`` of FFCV's classes and functions to ``module:name``, the one place where each is
    described in full; elsewhere the name records ``same_as`` that place. Names imported from other libraries
    record only kind, ``bound`` and ``source``.
    """
    bindings = top_level_bindings(module)
    names = {}
    for name in sorted(dir(module)):
        if name.startswith('_'):
            continue
        obj = getattr(module, name)
        if name in bindings:
            info = dict(bindings[name])
        elif inspect.ismodule(obj) and obj.__name__ == f'{module.__name__}.{name}':
            info = {'bound': 'submodule', 'source': obj.__name__}
        else:
            source = obj.__name__ if inspect.ismodule(obj) else getattr(obj, '__module__', None)
            info = {'bound': 'dynamic', 'source': source if isinstance(source, str) else None}
        home = homes.get(id(obj))
        foreign = info['bound'] == 'imported' and not is_ffcv_name(info['source']) and home is None
        if (home is not None and home != f'{module.__name__}:{name}') or foreign:
            info['kind'] = object_kind(obj)
            if home is not None:
                info['same_as'] = home
        else:
            info.update(describe_object(obj, f'{module.__name__}:{name}'))
        names[name] = info
    exported = getattr(module, '__all__', None)
    return {'file': module_file_kind(module), 'all': sorted(exported) if exported is not None else None,
            'names': names}


def find_homes(modules: Dict[str, object]) -> Dict[int, str]:
    """``{id(obj): 'module:name'}`` for FFCV's classes and functions: where ``__module__`` and ``__name__`` say
    they were defined if that place holds them, else the first place in sorted order."""
    places: Dict[int, List[str]] = {}
    objects = {}
    for module_name in sorted(modules):
        for name in sorted(dir(modules[module_name])):
            obj = getattr(modules[module_name], name)
            if not name.startswith('_') and object_kind(obj) not in ('module', 'other') and is_ffcv_object(obj):
                places.setdefault(id(obj), []).append(f'{module_name}:{name}')
                objects[id(obj)] = obj
    homes = {}
    for key, found in places.items():
        own = f"{objects[key].__module__}:{getattr(objects[key], '__name__', '')}"
        homes[key] = own if own in found else found[0]
    return homes


def skip_reason(name: str) -> Optional[str]:
    for prefix, reason in SKIPPED.items():
        if name == prefix or name.startswith(prefix + '.'):
            return reason
    return None


def module_names(package) -> List[str]:
    """All module names under `package`, like pkgutil.walk_packages, never importing skipped packages."""
    found = [package.__name__]
    for info in pkgutil.iter_modules(package.__path__, package.__name__ + '.'):
        if skip_reason(info.name) is None:
            found.append(info.name)
            if info.ispkg:
                found.extend(module_names(importlib.import_module(info.name))[1:])
    return found


def build_manifest() -> dict:
    from importlib import metadata
    os.environ.pop('FFCV_DEFAULT_CACHE_PROCESS', None)  # it sets the default of Loader(os_cache=...)
    package = importlib.import_module(PACKAGE)
    if REPO in Path(package.__file__).resolve().parents:
        sys.exit(f'{PACKAGE} was imported from this repository ({package.__file__}); run the FFCV interpreter '
                 f'with -I from outside the repository')
    names = sorted(module_names(package))
    modules, errors = {}, {}
    for name in names:
        try:
            modules[name] = importlib.import_module(name)
        except Exception as error:  # recorded, not fatal: the manifest says what could not be described
            errors[name] = f'{type(error).__name__}: {error}'
    homes = find_homes(modules)
    described = {name: describe_module(module, homes) for name, module in modules.items()}
    versions = {}
    for dist in (PACKAGE, 'numba', 'numpy', 'torch'):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    return {'about': {'tool': 'scripts/ffcv_api_manifest.py', 'python': platform.python_version(),
                      'distributions': versions, 'package_version_attribute': getattr(package, '__version__', None)},
            'skipped': dict(SKIPPED), 'values_not_recorded': dict(VARYING), 'import_errors': errors,
            'modules': described}


def count(manifest: dict) -> Dict[str, int]:
    """Modules, public names and recorded signatures (names and class members) in a manifest."""
    names = signatures = 0
    for module in manifest['modules'].values():
        for info in module['names'].values():
            names += 1
            signatures += info.get('signature') is not None
            signatures += sum(m.get('signature') is not None for m in info.get('members', {}).values())
    return {'modules': len(manifest['modules']), 'names': names, 'signatures': signatures}


def dumps(obj, level: int = 0) -> str:
    """JSON with sorted keys, dicts indented by one space per level and every list on one line."""
    if isinstance(obj, dict) and obj:
        pad = ' ' * (level + 1)
        items = [f'{pad}{json.dumps(key)}: {dumps(obj[key], level + 1)}' for key in sorted(obj)]
        return '{\n' + ',\n'.join(items) + '\n' + ' ' * level + '}'
    return json.dumps(obj, sort_keys=True, separators=(', ', ': '))


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', required=True, help='where to write the JSON manifest')
    args = parser.parse_args(argv)
    manifest = build_manifest()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(dumps(manifest) + '\n')
    sizes = count(manifest)
    print(f"{out}: {sizes['modules']} modules, {sizes['names']} public names, {sizes['signatures']} signatures, "
          f"{len(manifest['import_errors'])} import errors")


if __name__ == '__main__':
    main()
