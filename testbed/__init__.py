"""The test bed: real peers (Consul, ZooKeeper, Kafka) started on this machine.

Used by the integration tests, the benchmarks and the README's demo. Programs come from
``.ci/install-consul`` and ``.ci/install-jvm-peers`` (cached under ``~/.cache/cluster-bootstrap``).
Not part of the installed package.
"""
