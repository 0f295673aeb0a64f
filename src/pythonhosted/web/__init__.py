"""Shared ASGI pieces: the server runner, plain responses, security headers, metrics, health."""
