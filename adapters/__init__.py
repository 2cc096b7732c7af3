"""The outer ring: Consul discovery, and one module per clustered service.

``SERVICES`` is the one list of service adapters, by the key users type
(``cluster-bootstrap zookeeper -- ...``), each naming ``module:Class``. A module is imported
only when its service is chosen: starting ZooKeeper does not pay for Jinja2 or Kafka's code.
"""

from __future__ import annotations

import importlib

from bootstrap.errors import UsageError
from bootstrap.ports import ServicePort

SERVICES: dict[str, str] = {
    "emqx": "adapters.emqx:EmqxService",
    "kafka": "adapters.kafka:KafkaService",
    "template": "adapters.template:TemplateService",
    "zookeeper": "adapters.zookeeper:ZooKeeperService",
}


def service_class(key: str) -> type[ServicePort]:
    """The adapter class for ``key``; an unknown key fails with the list of known ones."""
    try:
        module_name, _, class_name = SERVICES[key].partition(":")
    except KeyError:
        known = ", ".join(sorted(SERVICES))
        raise UsageError(f"unknown service {key!r} (known: {known})") from None
    cls = getattr(importlib.import_module(module_name), class_name)
    if not (isinstance(cls, type) and issubclass(cls, ServicePort)):
        raise TypeError(f"{SERVICES[key]} is not a ServicePort")
    return cls
