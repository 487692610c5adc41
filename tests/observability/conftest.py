from tests.backup.support import fresh_database, ops_database

__all__ = ["fresh_database", "ops_database"]
