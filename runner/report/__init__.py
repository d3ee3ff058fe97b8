"""PURE: strings and JSON documents for the terminal and the event log; no I/O (runner/console.py prints)."""
