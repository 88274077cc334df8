"""Reading nerfstudio's config.yml without letting the file run code.

nerfstudio writes its TrainerConfig with `yaml.dump`, whose python tags (`!!python/object`,
`!!python/object/apply`, `!!python/name`) `yaml.Loader` turns into any call at all: a config
carried in a shared weights file or run folder could run `os.system`. This loader is yaml's safe
loader plus exactly what such configs hold, rebuilt by code:

- `!!python/object:C`: C must be a dataclass of nerfstudio or clipnerf_ns; its fields are set
  without calling anything;
- `!!python/name:X`: X must be a class of those packages or torch.optim (the `_target`s), or a
  function of nerfstudio's data utilities (the collate function);
- `!!python/object/apply:F`: F must be a path class (pathlib) or an Enum of those packages;
- `!!python/tuple`.

Anything else is refused with one line naming the tag.
"""

from __future__ import annotations

import dataclasses
import enum
import importlib
import inspect
import pathlib
from typing import Any

import yaml

from clipnerf_ns.errors import UserError

CONFIG_PACKAGES = ("nerfstudio.", "clipnerf_ns.")
CLASS_PACKAGES = CONFIG_PACKAGES + ("torch.optim.",)
FUNCTION_PACKAGES = ("nerfstudio.data.utils.",)
PATH_CLASSES = {f"pathlib.{name}": getattr(pathlib, name) for name in ("Path", "PosixPath", "WindowsPath", "PurePosixPath")}


MOVED = {
    "clipnerf_ns.config.": "clipnerf_ns.app.methods.",
    "clipnerf_ns.pipelines.mapper_pipeline.MapperModel": "clipnerf_ns.editing.mapper_model.MapperModel",
}
"""Where classes that configs name have moved (old prefix -> new), so runs and weights files
written before a move still load."""


def _moved(dotted: str) -> str:
    for old, new in MOVED.items():
        if dotted.startswith(old):
            return new + dotted[len(old):]
    return dotted


class _Refused(yaml.YAMLError):
    pass


def _resolve(dotted: str, packages: tuple[str, ...]) -> Any:
    """The object `module.attr` names, imported only from the allowed packages."""
    dotted = _moved(dotted)
    module_name, _, attr = dotted.rpartition(".")
    if not module_name or not any(dotted.startswith(prefix) for prefix in packages):
        raise _Refused(f"refuses {dotted!r} (only {', '.join(p.rstrip('.') for p in packages)} may be named)")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError):
        raise _Refused(f"names {dotted!r}, which does not exist here") from None


class ConfigLoader(yaml.SafeLoader):
    """yaml.SafeLoader that also builds the python-tagged nodes of nerfstudio configs (see module doc)."""


def _object(loader: ConfigLoader, suffix: str, node: yaml.Node) -> Any:
    cls = _resolve(suffix, CONFIG_PACKAGES)
    if not (inspect.isclass(cls) and dataclasses.is_dataclass(cls)):
        raise _Refused(f"refuses !!python/object:{suffix} (not a config dataclass)")
    instance = cls.__new__(cls)
    yield instance
    state = loader.construct_mapping(node, deep=True) if isinstance(node, yaml.MappingNode) else {}
    # The same as yaml.Loader does for objects without __setstate__, minus the call to it.
    instance.__dict__.update(state)


def _name(loader: ConfigLoader, suffix: str, node: yaml.Node) -> Any:
    if suffix.startswith(FUNCTION_PACKAGES):
        value = _resolve(suffix, FUNCTION_PACKAGES)
        if inspect.isfunction(value):
            return value
    value = _resolve(suffix, CLASS_PACKAGES)
    if not inspect.isclass(value):
        raise _Refused(f"refuses !!python/name:{suffix} (not a class)")
    return value


def _apply(loader: ConfigLoader, suffix: str, node: yaml.Node) -> Any:
    args = loader.construct_sequence(node, deep=True) if isinstance(node, yaml.SequenceNode) else []
    if suffix in PATH_CLASSES:
        if not all(isinstance(a, str) for a in args):
            raise _Refused(f"!!python/object/apply:{suffix} takes strings")
        return pathlib.Path(*args)
    cls = _resolve(suffix, CONFIG_PACKAGES)
    if inspect.isclass(cls) and issubclass(cls, enum.Enum) and len(args) == 1:
        return cls(args[0])  # an Enum member by value: a lookup, not a call of user code
    raise _Refused(f"refuses !!python/object/apply:{suffix} (only paths and enums may be built)")


ConfigLoader.add_multi_constructor("tag:yaml.org,2002:python/object:", _object)
ConfigLoader.add_multi_constructor("tag:yaml.org,2002:python/name:", _name)
ConfigLoader.add_multi_constructor("tag:yaml.org,2002:python/object/apply:", _apply)
ConfigLoader.add_constructor("tag:yaml.org,2002:python/tuple", lambda loader, node: tuple(loader.construct_sequence(node)))


def load_config_yaml(text: str, where: str) -> Any:
    """A nerfstudio config (usually a TrainerConfig) from YAML text, built without running code;
    `where` names the file (or weights file) in the one-line error."""
    try:
        return yaml.load(text, Loader=ConfigLoader)  # noqa: S506 - ConfigLoader is the safe loader above
    except _Refused as err:
        raise UserError(f"{where}: unsafe or foreign config: it {err}") from None
    except yaml.YAMLError as err:
        raise UserError(f"{where}: not a readable nerfstudio config ({err.__class__.__name__})") from None
