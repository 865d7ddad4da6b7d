"""Replay bundles: a race encoded once at ingest, opened by memory mapping, shared by all viewers."""

from .format import FORMAT_VERSION, BundleError, StreamEncoder, validate_id
from .open import Bundle, Stream, open_bundle
from .store import DataDir, default_data_dir, summary
from .write import default_encoders, race_metadata, write_bundle

__all__ = [
    "FORMAT_VERSION",
    "Bundle",
    "BundleError",
    "DataDir",
    "Stream",
    "StreamEncoder",
    "default_data_dir",
    "default_encoders",
    "open_bundle",
    "race_metadata",
    "summary",
    "validate_id",
    "write_bundle",
]
