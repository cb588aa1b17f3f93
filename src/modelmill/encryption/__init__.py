"""Encryption at rest: every file of an encrypted bundle or run sealed with AES-256-GCM
(``seals``: the file format, keys and their fingerprints), and an encrypted run's log sealed
record by record as it is written (``logs``)."""

from modelmill.encryption.logs import MAX_RECORD, LogRecords, SealedLog, SealedLogHandler, read_log
from modelmill.encryption.seals import (KEY_BYTES, KEY_ENVIRONMENT, KEY_FILE_ENVIRONMENT, MAGIC, MAX_PLAINTEXT, PREFIX,
                                        STREAM_MAGIC, Key, as_key, check_key, find_name, generate_key, is_sealed,
                                        key_fingerprint, key_from_environment, key_text, name_tag, parse_key,
                                        read_key_file, require_key, seal, seal_if, unseal, write_key_file)

__all__ = ["KEY_BYTES", "KEY_ENVIRONMENT", "KEY_FILE_ENVIRONMENT", "MAGIC", "MAX_PLAINTEXT", "MAX_RECORD", "PREFIX",
           "STREAM_MAGIC", "Key", "LogRecords", "SealedLog", "SealedLogHandler", "as_key", "check_key", "find_name",
           "generate_key", "is_sealed", "key_fingerprint", "key_from_environment", "key_text", "name_tag",
           "parse_key", "read_key_file", "read_log", "require_key", "seal", "seal_if", "unseal", "write_key_file"]
