"""Pipeline files: read the stages of ``imgedit run -f FILE`` from TOML or YAML.

The file's suffix picks the format: ``.toml``, or ``.yaml`` / ``.yml``.

TOML: one ``[[stage]]`` table per stage, in order. ``op`` names the
operation, ``method`` (optional) picks its method, every other key is a
parameter::

    # pipeline.toml
    [[stage]]
    op = "denoise"
    sigma = 25

    [[stage]]
    op = "inpaint"
    method = "telea"

YAML: a ``stages`` list of mappings with the same keys::

    # pipeline.yaml
    stages:
      - op: denoise
        sigma: 25
      - op: inpaint
        method: telea

Either format may instead give the compact one-line form used on the command
line, parsed exactly as :meth:`imgedit.pipeline.Pipeline.parse` parses it::

    pipeline = "denoise sigma=25 | inpaint method=telea"      # TOML
    pipeline: "denoise sigma=25 | inpaint method=telea"       # YAML

Values keep their file types (int, float, bool, string); the compact form
gives strings. Either way :meth:`imgedit.operations.Operation.parse_params`
converts and checks them when the pipeline is built, so this module checks
only the file's shape, not operation or parameter names. As on the command
line, ``-`` in a parameter name becomes ``_``.

Reading YAML needs PyYAML (optional: ``pip install pyyaml``). Reading TOML
uses :mod:`tomllib` (Python 3.11+) or, on older Pythons, ``tomli``.

Every problem is a :class:`~imgedit.errors.UsageError` with a one-line
message that starts with the file name (and names the stage where one is at
fault).

The file may come from someone else (an upload to a service), so it is
bounded: at most :data:`MAX_FILE_BYTES`, no YAML aliases (``*name``: a few
hundred bytes of them expand to gigabytes), no nesting deeper than the
parser's recursion, no text over :data:`MAX_TEXT` characters, and values in
messages are cut short.
"""

from __future__ import annotations

import reprlib
from pathlib import Path
from typing import Any, Callable

from imgedit.errors import UsageError
from imgedit.pipeline import parse_stages

__all__ = ["PIPELINE_FILE_SUFFIXES", "load_pipeline_specs"]

#: Suffixes :func:`load_pipeline_specs` reads (case-insensitive).
PIPELINE_FILE_SUFFIXES: tuple[str, ...] = (".toml", ".yaml", ".yml")

Spec = tuple[str, dict[str, Any]]

# Parameter values a stage may carry; anything else (tables, lists, dates,
# null) is refused here with the file and stage named.
_SCALARS = (str, int, float, bool)

#: Largest pipeline file read: a real one is a few hundred bytes.
MAX_FILE_BYTES = 1 << 20
#: Longest text (name, value or compact pipeline) taken: later errors quote it whole.
MAX_TEXT = 1000

# Values shown in messages: a few elements, a short string, never the whole value.
_SHORT = reprlib.Repr()
_SHORT.maxstring = _SHORT.maxother = 60


def load_pipeline_specs(path: Path) -> list[Spec]:
    """Read a pipeline file into ``[(op_name, {param: value, "method": m}), ...]``,
    ready for :meth:`imgedit.pipeline.Pipeline.from_specs`.

    Args:
        path: a ``.toml``, ``.yaml`` or ``.yml`` file (see the module docstring).

    Returns:
        One ``(op_name, params)`` pair per stage, in file order. ``params``
        holds ``"method"`` only when the stage names one.

    Raises:
        UsageError: unknown suffix, missing, unreadable or too large file,
            syntax error (with its line where the parser reports one), a YAML
            alias, nesting too deep, PyYAML/tomli not installed, unknown
            top-level keys, no stages, a stage that is not a table/mapping, a
            stage without ``op``, or a bad or too long value.

    Example:
        >>> specs = load_pipeline_specs(Path("pipeline.toml"))  # doctest: +SKIP
        >>> specs
        [('denoise', {'sigma': 25}), ('inpaint', {'method': 'telea'})]
        >>> Pipeline.from_specs(specs)  # doctest: +SKIP
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".toml":
        data, key, table = _load_toml(path), "stage", "table"
    elif suffix in (".yaml", ".yml"):
        data, key, table = _load_yaml(path), "stages", "mapping"
    else:
        raise UsageError(
            f"{path}: unknown pipeline file type {path.suffix or '(no suffix)'!r}; "
            f"use {', '.join(PIPELINE_FILE_SUFFIXES)}"
        )
    return _specs_from_data(path, data, key, table)


# ----------------------------------------------------------------- reading
def _read_bytes(path: Path) -> bytes:
    if not path.exists():
        raise UsageError(f"pipeline file not found: {path}")
    if not path.is_file():
        raise UsageError(f"pipeline file {path} is not a file")
    try:
        with path.open("rb") as file:
            raw = file.read(MAX_FILE_BYTES + 1)  # not the size from stat: the file may grow meanwhile
    except OSError as exc:
        raise UsageError(f"cannot read pipeline file {path}: {exc.strerror or exc}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise UsageError(f"{path}: pipeline file is over {MAX_FILE_BYTES // 1024} KB; a pipeline is a few stages")
    return raw


def _decode(path: Path, raw: bytes) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}: not UTF-8 text (byte {exc.start})") from None


def _toml_loads() -> Callable[[str], Any]:
    try:
        import tomllib  # Python 3.11+
    except ImportError:  # pragma: no cover - depends on the Python version
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ImportError:
            raise UsageError("reading TOML pipelines needs Python 3.11+ or tomli: pip install tomli") from None
    return tomllib.loads


def _load_toml(path: Path) -> Any:
    loads = _toml_loads()
    text = _decode(path, _read_bytes(path))
    try:
        return loads(text)
    except ValueError as exc:  # TOMLDecodeError is a ValueError; its text ends "(at line L, column C)"
        raise UsageError(f"{path}: invalid TOML: {_one_line(exc)}") from None
    except RecursionError:
        raise UsageError(f"{path}: invalid TOML: arrays or tables nested too deeply") from None


def _load_yaml(path: Path) -> Any:
    try:
        import yaml
    except ImportError:
        raise UsageError("reading YAML pipelines needs PyYAML: pip install pyyaml") from None
    text = _decode(path, _read_bytes(path))
    try:
        return yaml.load(text, Loader=_yaml_loader(yaml))  # noqa: S506 - a SafeLoader, less aliases
    except RecursionError:
        raise UsageError(f"{path}: invalid YAML: lists or mappings nested too deeply") from None
    except ValueError as exc:  # a value the constructor refuses: an integer of over 4300 digits
        raise UsageError(f"{path}: invalid YAML: {_one_line(exc)}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None)
        if mark is not None:
            what = _one_line(problem or exc)
            raise UsageError(
                f"{path}: invalid YAML at line {mark.line + 1}, column {mark.column + 1}: {what}"
            ) from None
        raise UsageError(f"{path}: invalid YAML: {_one_line(exc)}") from None


def _yaml_loader(yaml: Any) -> type:
    """PyYAML's SafeLoader refusing aliases: each ``*name`` is a reference
    to a whole value, so nested ones make a tiny file a huge document."""

    class NoAliasLoader(yaml.SafeLoader):
        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                raise yaml.composer.ComposerError(
                    None, None, "aliases (*name) are not allowed in a pipeline file", self.peek_event().start_mark)
            return super().compose_node(parent, index)

    return NoAliasLoader


def _one_line(what: object) -> str:
    return " ".join(str(what).split())


# ----------------------------------------------------------------- checking
def _specs_from_data(path: Path, data: Any, key: str, table: str) -> list[Spec]:
    """Check the loaded document's shape. ``key`` is the stage list's name
    (``stage`` in TOML, ``stages`` in YAML); ``table`` what a stage is called."""
    if data is None:  # an empty YAML file
        data = {}
    if not isinstance(data, dict):
        raise UsageError(f"{path}: expected a {table} with '{key}' or 'pipeline' at the top, got {_kind(data)}")
    unknown = [k for k in data if k not in (key, "pipeline")]
    if unknown:
        names = ", ".join(_short(str(k)) for k in unknown[:10]) + (", ..." if len(unknown) > 10 else "")
        raise UsageError(f"{path}: unknown top-level key{'s' if len(unknown) > 1 else ''} {names} "
                         f"(expected '{key}' or 'pipeline')")
    if key in data and "pipeline" in data:
        raise UsageError(f"{path}: give either '{key}' or 'pipeline', not both")
    if "pipeline" in data:
        return _compact(path, data["pipeline"])
    stages = data.get(key)
    if stages is None or stages == []:
        example = "[[stage]] tables" if key == "stage" else "a 'stages' list"
        raise UsageError(f"{path}: no stages (give {example} or a 'pipeline' string)")
    if isinstance(stages, dict):
        hint = " (write [[stage]], not [stage])" if key == "stage" else " (make each stage a list item: '- op: ...')"
        raise UsageError(f"{path}: '{key}' must be a list of {table}s, got a single {table}{hint}")
    if not isinstance(stages, list):
        raise UsageError(f"{path}: '{key}' must be a list of {table}s, got {_kind(stages)}")
    return [_stage(path, index, stage, table) for index, stage in enumerate(stages, start=1)]


def _stage(path: Path, index: int, stage: Any, table: str) -> Spec:
    where = f"{path}: stage {index}"
    if not isinstance(stage, dict):
        raise UsageError(f"{where}: expected a {table} with 'op', got {_kind(stage)}")
    if "op" not in stage:
        keys = ", ".join(_clip(str(k)) for k in list(stage)[:10]) + (", ..." if len(stage) > 10 else "")
        has = f"; its keys: {keys}" if keys else "; it is empty"
        raise UsageError(f"{where}: no 'op' (the operation to run){has}")
    name = stage["op"]
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_TEXT:
        raise UsageError(f"{where}: 'op' must be an operation name, got {_kind(name)}")
    name = name.strip()
    where = f"{path}: stage {index} ({_clip(name)})"
    params: dict[str, Any] = {}
    for key, value in stage.items():
        if key == "op":
            continue
        if not isinstance(key, str) or not key or len(key) > MAX_TEXT:
            raise UsageError(f"{where}: parameter names must be text, got {_kind(key)}")
        if key == "method" and not isinstance(value, str):
            raise UsageError(f"{where}: 'method' must be a method name, got {_kind(value)}")
        if not isinstance(value, _SCALARS):
            raise UsageError(
                f"{where}: parameter {_short(key)} must be a number, true/false or text, got {_kind(value)}"
            )
        if isinstance(value, str) and len(value) > MAX_TEXT:
            raise UsageError(f"{where}: parameter {_short(key)} is text of {len(value)} characters, "
                             f"over the {MAX_TEXT} a value may have")
        norm = key.replace("-", "_")
        if norm in params:
            raise UsageError(f"{where}: parameter '{norm}' is given twice")
        params[norm] = value
    return name, params


def _compact(path: Path, text: Any) -> list[Spec]:
    if not isinstance(text, str):
        raise UsageError(f"{path}: 'pipeline' must be text like \"denoise sigma=25 | inpaint\", got {_kind(text)}")
    if not text.strip():
        raise UsageError(f"{path}: no stages ('pipeline' is empty)")
    if len(text) > MAX_TEXT:
        raise UsageError(f"{path}: 'pipeline' is {len(text)} characters, over {MAX_TEXT}; "
                         "give longer pipelines as stages")
    try:
        return parse_stages(text)
    except UsageError as exc:
        raise UsageError(f"{path}: {exc}") from None


def _kind(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, dict):
        return "a table/mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"text {_short(value)}"
    return f"{type(value).__name__} {_short(value)}"


def _short(value: Any) -> str:
    """``repr(value)``, cut short: a value from the file may be megabytes."""
    return _SHORT.repr(value)


def _clip(text: str) -> str:
    """A name from the file as plain text, one line and cut short."""
    text = text if text.isprintable() else repr(text)[1:-1]
    return text if len(text) <= 60 else text[:57] + "..."
