"""Local stand-ins for Azure used by the demo and the tests; never deployed."""
