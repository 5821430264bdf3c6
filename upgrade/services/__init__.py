"""Use cases over the ports: react to an event, run a step, scan, preflight, start/decide runs."""
