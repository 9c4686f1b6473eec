"""The speaker demo (`scripts/demo`): `sartd bgp` peering with a real FRR router.

Two network namespaces joined by a veth pair: FRR (AS 65000) as the top-of-rack router and
`sartd bgp` (AS 65001) as a node, started from a config file in the original sart's format
that announces a LoadBalancer address and a pod block. The demo waits for FRR to learn them,
prints FRR's table and the kernel route zebra installed, then stops sartd (which closes the
session with a Cease) and removes everything.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from sart.testing.peers import BgpConfig, Frr, Lab, neighbor

ROUTER_AS, NODE_AS = 65000, 65001
ANNOUNCED = ("203.0.113.10/32", "10.244.1.0/24")


def main() -> None:
    with Lab("demo") as lab, tempfile.TemporaryDirectory(prefix="sart-demo-") as workdir:
        router_ns, node_ns = lab.namespace("router"), lab.namespace("node")
        link = lab.link(router_ns, node_ns)
        router_address, node_address = link.a.ipv4, link.b.ipv4
        print(f"router namespace {router_ns.name}: FRR, AS {ROUTER_AS}, {router_address}")
        print(f"node namespace   {node_ns.name}: sartd bgp, AS {NODE_AS}, {node_address}")
        router = lab.start(
            Frr(
                router_ns,
                BgpConfig(
                    router_id=router_address,
                    local_as=ROUTER_AS,
                    neighbors=(neighbor(node_address, NODE_AS),),
                ),
            )
        )
        config = Path(workdir) / "bgp.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "asn": NODE_AS,
                    "router_id": node_address,
                    "neighbors": [{"name": "tor", "asn": ROUTER_AS, "address": router_address}],
                    "paths": [{"prefixes": list(ANNOUNCED), "attributes": {"origin": "igp"}}],
                },
                sort_keys=False,
            )
        )
        print(f"\n== {config.name} (the original sart's format) ==\n{config.read_text()}")
        command = [sys.executable, "-m", "sart.cli.sartd", "bgp", "-f", str(config)]
        print(f"== {' '.join(['sartd', *command[3:]])}, in the node namespace ==")
        sartd = node_ns.popen(command, stdout=None, stderr=None)
        try:
            started = time.monotonic()
            for prefix in ANNOUNCED:
                router.wait_route(prefix, timeout=30)
            print(f"\n== FRR learned both routes {time.monotonic() - started:.1f} s after start ==")
            print(router.vtysh("show bgp ipv4 unicast"))
            kernel = router_ns.run(["ip", "route", "show", "proto", "bgp"]).stdout
            print(f"== kernel routes zebra installed in the router namespace ==\n{kernel}")
        finally:
            sartd.terminate()
            sartd.wait(15)
        router.wait_not_established(node_address)
        error = router.last_error(node_address)
        print(f"== sartd stopped; FRR says: {error.text if error else 'session down'} ==")


if __name__ == "__main__":
    try:
        main()
    except subprocess.CalledProcessError as failure:
        sys.exit(f"demo failed: {failure}")
