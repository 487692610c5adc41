"""Encryption, keys and where ciphertext lives."""
