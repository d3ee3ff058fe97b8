"""Placeholder for the OpenAPI document and the web overview (see register)."""


def register(app):
    pass
