"""A local Twilio-compatible carrier: the service and its tests talk to it through the SDK.

``create_emulator_app(settings)`` builds the Flask app; ``serve_emulator`` serves it;
``start_emulator_in_thread`` runs it in the background for tests.
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
