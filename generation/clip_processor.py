"""Silence transformers' note that the prior's image processor falls back to PIL.

transformers 5 made ``CLIPImageProcessor`` the torchvision-backed processor; looking the
name up without torchvision gives ``CLIPImageProcessorPil`` instead and logs
"CLIPImageProcessor requires torchvision (not installed); falling back…". diffusers'
Kandinsky prior looks the name up when it is imported, so every start printed it. The
PIL processor does the same job (it prepares images for the prior's ``interpolate``,
which the bot never calls), so we install no torchvision and drop that one note;
everything else transformers logs passes.
"""

from __future__ import annotations

import logging

FALLBACK_NOTE = "requires torchvision (not installed); falling back to"


class _DropPilFallbackNote(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return FALLBACK_NOTE not in record.getMessage()


def drop_pil_fallback_note() -> None:
    """Call before importing diffusers' Kandinsky pipelines (idempotent)."""
    logger = logging.getLogger("transformers.utils.import_utils")
    if not any(isinstance(f, _DropPilFallbackNote) for f in logger.filters):
        logger.addFilter(_DropPilFallbackNote())
