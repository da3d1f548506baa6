"""Twilio-facing endpoints: signed, idempotent, and never calling out."""
