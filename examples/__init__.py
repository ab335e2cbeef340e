"""Runnable examples of the library and of the CLI's user models (``--model examples.<module>:<factory>``)."""
