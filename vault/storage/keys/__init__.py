"""The key hierarchy: master keys (key provider) -> patient KEKs -> per-record data keys."""
