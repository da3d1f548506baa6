"""The provider loads the SDK's call and message resources when it is built, not on the first
create: that import took half a second inside the first paced call after a worker started."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap


def test_building_the_provider_loads_the_resources_the_first_create_needs() -> None:
    # A fresh interpreter: in this one, other tests have imported the SDK's modules already.
    script = textwrap.dedent(
        """
        import json, sys
        from robot.config import TwilioSettings
        from robot.providers.twilio import TwilioProvider

        before = {m for m in ("twilio.rest.api.v2010.account.call",
                              "twilio.rest.api.v2010.account.message") if m in sys.modules}
        TwilioProvider(TwilioSettings(account_sid="AC" + "0" * 32, auth_token="t",
                                      api_base_url="http://127.0.0.1:9"))
        after = {m for m in ("twilio.rest.api.v2010.account.call",
                             "twilio.rest.api.v2010.account.message") if m in sys.modules}
        print(json.dumps([sorted(before), sorted(after)]))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    before, after = json.loads(done.stdout)
    assert before == []  # nothing of them loaded before the provider was built
    assert after == ["twilio.rest.api.v2010.account.call", "twilio.rest.api.v2010.account.message"]
