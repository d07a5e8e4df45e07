"""Plumbing the services share and an installed package must find: the topics and their
required configuration. It imports only `schemas`; no service's code lives here."""
