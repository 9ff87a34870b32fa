"""Strict fastargs configuration for the training recipes.

The recipes declare their parameters with fastargs `Section`/`Param` (as ffcv-imagenet does) and read them
with `parse_config`, which adds what fastargs alone does not do:

* an unknown or misspelt key in a YAML file or on the command line is an error naming the key, the file
  and the closest known key;
* booleans are ``true``/``false`` (``--training.lr_tta=false`` really means False);
* a missing required value or an invalid one is an error, not a silent exit, and so is a malformed
  command line (a ConfigError, not argparse's usage text);
* ``--help`` shows the value a plain run uses for each parameter, or '(required)';
* values come from the config files in order, then ``--section.key=value`` overrides (no environment
  variables), and the resolved values can be saved next to the logs.
"""
from __future__ import annotations

import argparse
import difflib
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import yaml
from fastargs import Config
from fastargs.validation import Checker


class ConfigError(ValueError):
    """Bad configuration: unknown key, invalid value or missing required value."""


class Boolean(Checker):
    """true/false (also yes/no, on/off, 1/0); anything else is an error."""
    TRUE = {'true', 'yes', 'on', '1'}
    FALSE = {'false', 'no', 'off', '0'}

    def check(self, value):
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in self.TRUE:
            return True
        if text in self.FALSE:
            return False
        raise ValueError(f'not a boolean: {value!r}')

    def help(self):
        return 'true or false'


def _flatten(tree: dict, prefix: str = '') -> Dict[str, object]:
    flat = {}
    for key, value in (tree or {}).items():
        path = f'{prefix}{key}'
        if isinstance(value, dict):
            flat.update(_flatten(value, path + '.'))
        else:
            flat[path] = value
    return flat


def _unknown(key: str, known: Sequence[str], where: str) -> ConfigError:
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.5)
    hint = f" (did you mean '{close[0]}'?)" if close else ''
    return ConfigError(f"unknown key '{key}' in {where}{hint}")


class _Parser(argparse.ArgumentParser):
    """argparse whose mistakes (an option without its value, say) are a ConfigError, not usage text + exit."""

    def error(self, message):
        raise ConfigError(f'command line: {message}')


def shown_default(param) -> str:
    """What --help says after a parameter's description: '(required)', or the value a plain run uses."""
    if param.required:
        return '(required)'
    if param.default is None:
        return '(default: not set)'
    if isinstance(param.default, bool):
        return f'(default: {str(param.default).lower()})'
    return f"(default: {param.default if param.default != '' else 'empty'})"


def parse_config(config: Config, argv: Optional[List[str]], description: str = '') -> Config:
    """Fill `config` (whose sections are declared) from ``--config-file`` YAMLs then ``--a.b=c`` overrides."""
    config.content.clear()  # a fresh parse every call (main() may run several times in one process)
    known = ['.'.join(path) for path in config.entries]
    parser = _Parser(description=description, formatter_class=argparse.RawTextHelpFormatter, allow_abbrev=False)
    parser.add_argument('--config-file', '-C', action='append', default=[],
                        help='YAML config file (may be repeated; later files override earlier ones)')
    for name in known:
        param = config.entries[tuple(name.split('.'))]
        text = f'{param.desc} {shown_default(param)}'.replace('%', '%%')  # argparse formats help with %
        parser.add_argument(f'--{name}', default=None, metavar='VALUE', help=text)
    args, extra = parser.parse_known_args(argv)
    if extra:
        raise _unknown(extra[0].lstrip('-').split('=')[0], known, 'the command line')
    for fname in args.config_file:
        if not Path(fname).is_file():
            raise ConfigError(f'--config-file {fname}: no such file')
        try:
            content = yaml.safe_load(Path(fname).read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{fname}: not valid YAML ({' '.join(str(exc).split())})") from exc
        if not isinstance(content, dict):
            raise ConfigError(f'{fname}: expected a mapping of sections, got {type(content).__name__}')
        values = _flatten(content)
        for key in values:
            if key not in known:
                raise _unknown(key, known, fname)
        config.collect(content)
    overrides = {name: getattr(args, name.replace('-', '_')) for name in known}
    config.collect({name: value for name, value in overrides.items() if value is not None})
    errors = config.validate(mode='errordict')
    if errors:
        problems = []
        for path, error in errors.items():
            name = '.'.join(path)
            given = config.content.get(path)
            problems.append(f'{name}: ' + ('required, not given' if given is None
                                           else f'{given!r} is not {config.entries[path].checker.help()}'))
        raise ConfigError('invalid configuration: ' + '; '.join(problems))
    return config


def config_dict(config: Config) -> dict:
    """The resolved configuration as a nested dict (for logs and checkpoints)."""
    out: dict = {}
    for path in config.entries:
        section = out
        for part in path[:-1]:
            section = section.setdefault(part, {})
        section[path[-1]] = config[path]
    return out



class Settings:
    """Read-only resolved values, by attribute: ``s.training.lr``; built once by `settings_of`.

    A misspelt name fails with the closest known one (``s.training.epoch`` -> did you mean 'epochs'?), and
    nothing can be assigned: a value that a run derives (a dataset path it built, say) is a variable of
    its own, not a rewritten setting.
    """

    def __init__(self, values: Dict[str, object], name: str = 'settings'):
        object.__setattr__(self, '_values', dict(values))
        object.__setattr__(self, '_name', name)

    def __getattr__(self, key: str):
        values = object.__getattribute__(self, '_values')
        if key in values:
            return values[key]
        if key.startswith('__'):  # copy / pickle probing for special methods
            raise AttributeError(key)
        name = object.__getattribute__(self, '_name')
        close = difflib.get_close_matches(key, list(values), n=1, cutoff=0.5)
        hint = f" (did you mean '{close[0]}'?)" if close else ''
        raise AttributeError(f"{name} has no setting '{key}'{hint}")

    def __setattr__(self, key: str, value) -> None:
        raise AttributeError(f"{self._name} is read-only (tried to set '{key}')")

    def __getstate__(self):
        return object.__getattribute__(self, '__dict__')

    def __setstate__(self, state) -> None:
        object.__getattribute__(self, '__dict__').update(state)

    def as_dict(self) -> dict:
        """Plain nested dict (for logs and checkpoints)."""
        return {key: value.as_dict() if isinstance(value, Settings) else value for key, value in self._values.items()}

    def __repr__(self) -> str:
        return f'{self._name}({self.as_dict()!r})'


def settings_of(config: Config) -> Settings:
    """The resolved values of a parsed `config` as `Settings`: ``s.section.key``."""
    sections: Dict[str, Dict[str, object]] = {}
    for path in config.entries:
        sections.setdefault(path[0], {})[path[1]] = config[path]
    return Settings({name: Settings(values, name) for name, values in sections.items()})
