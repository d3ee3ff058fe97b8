"""Helpers shared by several test areas: a live or in-process registry server, fakes."""
