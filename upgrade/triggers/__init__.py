"""Thin trigger handlers, one blueprint per trigger family: parse, call a service, map the result.

Services and adapters are imported inside the handlers, so importing function_app (a cold start)
loads azure.functions and little else.
"""
