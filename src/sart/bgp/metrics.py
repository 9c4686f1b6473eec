"""Prometheus metrics of a running speaker, read when scraped (prometheus-client collector).

The HTTP endpoint runs on prometheus-client's own thread; the collector only copies counters
the event loop keeps, so a scrape never waits for the speaker nor changes it."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from sart.bgp.fsm import State
from sart.bgp.speaker import Speaker

STATE_NUMBERS = {state: number for number, state in enumerate(State, 1)}


class SpeakerCollector(Collector):
    def __init__(self, speaker: Speaker) -> None:
        self.speaker = speaker

    def collect(self) -> Iterator[Metric]:
        speaker = self.speaker
        neighbors = list(speaker.neighbors.values())
        labels = ["peer", "peer_asn"]
        state = GaugeMetricFamily(
            "sart_bgp_peer_state",
            "Session state: 1 Idle, 2 Connect, 3 Active, 4 OpenSent, 5 OpenConfirm, 6 Established",
            labels=labels,
        )
        up = GaugeMetricFamily(
            "sart_bgp_peer_up", "1 while the session is established", labels=labels
        )
        received = CounterMetricFamily(
            "sart_bgp_peer_messages_received", "BGP messages received", labels=labels
        )
        sent = CounterMetricFamily(
            "sart_bgp_peer_messages_sent", "BGP messages sent", labels=labels
        )
        updates_in = CounterMetricFamily(
            "sart_bgp_peer_updates_received", "UPDATE messages received", labels=labels
        )
        updates_out = CounterMetricFamily(
            "sart_bgp_peer_updates_sent", "UPDATE messages sent", labels=labels
        )
        prefixes_in = GaugeMetricFamily(
            "sart_bgp_peer_prefixes_received", "Paths in the peer's Adj-RIB-In", labels=labels
        )
        prefixes_out = GaugeMetricFamily(
            "sart_bgp_peer_prefixes_sent", "Prefixes in the peer's Adj-RIB-Out", labels=labels
        )
        established = CounterMetricFamily(
            "sart_bgp_peer_established", "Times the session came up", labels=labels
        )
        for neighbor in neighbors:
            values = [str(neighbor.address), str(neighbor.config.asn)]
            state.add_metric(values, STATE_NUMBERS[neighbor.state])
            up.add_metric(values, 1 if neighbor.established else 0)
            messages_in, messages_out = neighbor.messages()
            received.add_metric(values, messages_in)
            sent.add_metric(values, messages_out)
            updates_in.add_metric(values, neighbor.stats.updates_in)
            updates_out.add_metric(values, neighbor.stats.updates_out)
            source = neighbor.source
            prefixes_in.add_metric(values, speaker.rib.count(source) if source else 0)
            adj_out = neighbor.adj_out
            prefixes_out.add_metric(values, len(adj_out) if adj_out is not None else 0)
            established.add_metric(values, neighbor.stats.established_count)
        yield from (state, up, received, sent, updates_in, updates_out)
        yield from (prefixes_in, prefixes_out, established)
        transitions = CounterMetricFamily(
            "sart_bgp_fsm_transitions",
            "Session state changes, by peer and new state",
            labels=["peer", "state"],
        )
        for (address, new_state), count in list(speaker.transitions.items()):
            if address in speaker.neighbors:  # a removed peer's series go with it
                transitions.add_metric([str(address), new_state.value], count)
        yield transitions
        rib = GaugeMetricFamily(
            "sart_bgp_rib_prefixes", "Prefixes in the Loc-RIB", labels=["family"]
        )
        v4 = speaker.rib.count_version(4)
        rib.add_metric(["ipv4-unicast"], v4)
        rib.add_metric(["ipv6-unicast"], len(speaker.rib) - v4)
        yield rib
        yield CounterMetricFamily(
            "sart_bgp_updates_processed",
            "UPDATE messages received from every peer",
            value=sum(n.stats.updates_in for n in neighbors),
        )
        yield GaugeMetricFamily(
            "sart_bgp_local_paths",
            "Locally originated paths",
            value=speaker.rib.count(speaker.local_source),
        )
