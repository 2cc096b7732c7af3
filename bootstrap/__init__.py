"""cluster-bootstrap: the core (settings, flow, ports). It never imports ``adapters``."""

__version__ = "0.1.0"
