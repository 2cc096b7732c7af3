"""The outer ring: Consul discovery, and one module per clustered service.

``SERVICES`` is the one list of service adapters, by the key users type
(``cluster-bootstrap zookeeper -- ...``).
"""

from __future__ import annotations

from adapters.emqx import EmqxService
from adapters.kafka import KafkaService
from adapters.template import TemplateService
from adapters.zookeeper import ZooKeeperService
from bootstrap.errors import UsageError
from bootstrap.ports import ServicePort

SERVICES: dict[str, type[ServicePort]] = {
    EmqxService.key: EmqxService,
    KafkaService.key: KafkaService,
    TemplateService.key: TemplateService,
    ZooKeeperService.key: ZooKeeperService,
}


def service_class(key: str) -> type[ServicePort]:
    """The adapter class for ``key``; an unknown key fails with the list of known ones."""
    try:
        return SERVICES[key]
    except KeyError:
        known = ", ".join(sorted(SERVICES))
        raise UsageError(f"unknown service {key!r} (known: {known})") from None
