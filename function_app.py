"""The Functions app: registers the blueprints. Nothing else lives here."""

import azure.functions as func

from upgrade.triggers import (
    events,
    http_console,
    http_preflight,
    http_quarantine,
    http_rollouts,
    http_upgrades,
    steps,
    timers,
)

app = func.FunctionApp()
app.register_functions(events.bp)
app.register_functions(steps.bp)
app.register_functions(timers.bp)
app.register_functions(http_upgrades.bp)
app.register_functions(http_quarantine.bp)
app.register_functions(http_preflight.bp)
app.register_functions(http_rollouts.bp)
app.register_functions(http_console.bp)
