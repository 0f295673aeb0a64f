"""Our own HTTP/1.1 server, for apps that answer their hottest requests inside the connection.

granian serves every other app. Behind its ASGI interface a request costs 38-47 us of CPU
before the app does anything (bench/server_floor.py: a bare ``asyncio.Protocol`` on uvloop
with httptools parsing costs 11-14 us), which kept the files edge at 4-5x nginx's CPU per
small download against a target of 3x. Here an app may offer a *quick answer*
(:mod:`.quick`): a GET or HEAD it can answer from memory with a head built in advance is
written by the connection's protocol in one ``writev``, without a task, a scope or a single
ASGI message; every other request goes to the app over ASGI (:mod:`.cycle`).

What granian gave the services, this server keeps (:mod:`.connection`, :mod:`.server`):
a head deadline from accept and between kept-alive requests, a bound on the head's size
(431) and on open connections per process (past it, new ones wait in the listen backlog),
back-pressure both ways (reading stops while a request or a pipelined one is waiting;
sends wait while the client is behind), and a stop that drains (:mod:`pythonhosted.web.drain`).
"""
