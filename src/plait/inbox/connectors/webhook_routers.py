"""The webhook routers of every connector that has one, for the server to mount."""

from __future__ import annotations

import importlib

from fastapi import APIRouter

WEBHOOK_MODULES = ("twilio_sms", "meta", "telegram", "phone", "api", "web_chat")
"""Connector modules with a ``router`` of provider webhooks (or a widget's endpoints)."""


def webhook_routers() -> list[APIRouter]:
    return [
        importlib.import_module(f"plait.inbox.connectors.{name}").router for name in WEBHOOK_MODULES
    ]
