"""Command-line helpers shared by the load tools: the parser, the error exit, and building the
frozen options dataclass from argparse's namespace."""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

T = TypeVar("T", bound="DataclassInstance")


def new_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """An argument parser for ``prog`` whose ``--help`` shows every option's default."""
    return argparse.ArgumentParser(
        prog=prog,
        description=description,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )


def fail(parser: argparse.ArgumentParser, message: str) -> NoReturn:
    """Print the usage and ``<prog>: error: <message>`` to stderr; exit 1.

    Raises:
        SystemExit: always, with status 1.
    """
    parser.print_usage(sys.stderr)
    print(f"{parser.prog}: error: {message}", file=sys.stderr)
    raise SystemExit(1)


def from_namespace(cls: type[T], ns: argparse.Namespace, **given: Any) -> T:
    """An instance of the dataclass ``cls``: each field from ``given`` if there, else the
    namespace attribute of the same name.

    Raises:
        TypeError: ``given`` names something that is not a field of ``cls``.
    """
    names = [f.name for f in fields(cls)]
    unknown = set(given) - set(names)
    if unknown:
        raise TypeError(f"{cls.__name__} has no fields {sorted(unknown)}")
    return cls(**{name: given[name] if name in given else getattr(ns, name) for name in names})
