"""Finds the deliverer for a question's platform; one instance per platform per process."""

from __future__ import annotations

import importlib
import logging
import threading

from core.config import Settings
from core.delivery import Deliverer, NullDeliverer

logger = logging.getLogger(__name__)

# Each platform's delivery module exposes `create_deliverer(settings) -> Deliverer`. Imported
# lazily so that a worker without a platform's library or token still answers other platforms.
DELIVERY_MODULES: dict[str, str] = {
    "discord": "bots.discord.delivery",
    "telegram": "bots.telegram.delivery",
}

_deliverers: dict[str, Deliverer] = {}
_lock = threading.Lock()


def get_deliverer(platform: str, settings: Settings) -> Deliverer:
    """Return the deliverer for `platform`; platforms without one (the console) get a no-op."""
    with _lock:
        if platform in _deliverers:
            return _deliverers[platform]
        module_name = DELIVERY_MODULES.get(platform)
        deliverer: Deliverer
        if module_name is None:
            deliverer = NullDeliverer()
        else:
            module = importlib.import_module(module_name)
            deliverer = module.create_deliverer(settings)
        _deliverers[platform] = deliverer
        return deliverer


def forget_deliverers() -> list[Deliverer]:
    """Drop the cached deliverers and return them so the caller can close them."""
    with _lock:
        closed = list(_deliverers.values())
        _deliverers.clear()
        return closed
