"""Typed dependencies: every route signature says what it needs."""

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from core.config import Settings
from core.foundations import FoundationRegistry
from core.runner import JobContext


def get_context(request: Request) -> JobContext:
    return request.app.state.context


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_session(request: Request) -> Iterator[Session]:
    session = request.app.state.context.sessions()
    try:
        yield session
    finally:
        session.close()


def get_registry(request: Request) -> FoundationRegistry:
    return request.app.state.context.registry


ContextDep = Annotated[JobContext, Depends(get_context)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[Session, Depends(get_session)]
RegistryDep = Annotated[FoundationRegistry, Depends(get_registry)]
