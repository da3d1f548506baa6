"""Voice scripts and speech: warning texts per fraud type and language, TwiML verbs, audio.

Modules (nothing is imported here, so ``robot.voice.templates`` does not pull in Flask):

- ``languages``: the supported template languages and language-tag normalisation.
- ``templates``: ``render(kind, fraud_type=..., language=..., context=...)`` over ``voice_templates/``.
- ``speech``: ``Speaker`` turns text into ``<Say>`` or ``<Play>`` verbs.
- ``offline`` / ``render_worker`` / ``resample``: pyttsx3 + espeak-ng rendering to 8 kHz WAV.
- ``prerender``: ``prerender_all`` fills the audio cache before any call needs it.
- ``audio``: the Flask blueprint serving cached audio at ``/voice/audio/<hash>.wav``.
- ``lint`` / ``checks`` / ``sms``: template checks (links, numbers, SMS segments, duration).
- ``cli``: the ``robot voice`` command group.
"""
