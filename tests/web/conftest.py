from tests.web.support import web

__all__ = ["web"]
