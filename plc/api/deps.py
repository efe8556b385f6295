"""Typed access to what the app factory put on ``app.state``."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from plc.config import Settings
from plc.service import Directory


def get_directory(request: Request) -> Directory:
    """The :class:`Directory` of this app."""
    directory: Directory = request.app.state.directory
    return directory


def get_settings(request: Request) -> Settings:
    """The :class:`Settings` of this app."""
    settings: Settings = request.app.state.settings
    return settings


DirectoryDep = Annotated[Directory, Depends(get_directory)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
