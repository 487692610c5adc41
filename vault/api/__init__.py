"""The HTTP surface: app factory, routers, error handlers, the FHIR wire."""
