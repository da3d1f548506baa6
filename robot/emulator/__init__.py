"""A local Twilio-compatible carrier: the service and its tests talk to it through the SDK.

* ``create_emulator_app(settings)`` builds the Flask app (state and ``shutdown()`` in
  ``app.extensions["emulator"]``); ``serve_emulator(settings, host, port)`` serves it, blocking;
  ``start_emulator_in_thread(settings)`` runs it in the background (``.base_url``, ``.stop()``).
* REST: ``/2010-04-01/Accounts/{AccountSid}/Calls.json``, ``Calls/{Sid}.json`` (fetch, update),
  ``Messages.json``, ``Messages/{Sid}.json``, with HTTP Basic auth.
* Control (JSON, no auth) under ``/_emulator/``: ``health``, ``calls[?to=]``,
  ``calls/<sid>[?wait=s]``, ``messages``, ``messages/<sid>[?wait=s]``, ``requests``, ``reset``,
  ``callees`` (GET/POST), ``faults``, ``inbound/sms``, ``inbound/call``.
* Who answers what: :mod:`robot.emulator.callees`; timings: :mod:`robot.emulator.callflow`.

Module map: settings, errors, formats, segments, signing, callees, records, limits, scheduler,
webhooks, twiml, interpreter, callflow, calls, messages, state, resources, rest, control, app,
server.
"""

from robot.emulator.app import create_emulator_app, emulator_state
from robot.emulator.server import RunningEmulator, serve_emulator, start_emulator_in_thread
from robot.emulator.settings import EmulatorSettings
from robot.emulator.state import EmulatorState

__all__ = [
    "EmulatorSettings",
    "EmulatorState",
    "RunningEmulator",
    "create_emulator_app",
    "emulator_state",
    "serve_emulator",
    "start_emulator_in_thread",
]
