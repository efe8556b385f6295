"""Typed access to what the app factory put on ``app.state``."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from plc.config import Settings
from plc.service import Directory


async def get_directory(request: Request) -> Directory:
    """The :class:`Directory` of this app (async: FastAPI runs sync dependencies in a thread)."""
    directory: Directory = request.app.state.directory
    return directory


async def get_settings(request: Request) -> Settings:
    """The :class:`Settings` of this app."""
    settings: Settings = request.app.state.settings
    return settings


def directory_of(request: Request) -> Directory:
    """The :class:`Directory` of the app serving ``request`` (for hot routes: a plain call
    costs a fraction of FastAPI's dependency resolution)."""
    directory: Directory = request.app.state.directory
    return directory


def settings_of(request: Request) -> Settings:
    """The :class:`Settings` of the app serving ``request``."""
    settings: Settings = request.app.state.settings
    return settings


DirectoryDep = Annotated[Directory, Depends(get_directory)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
