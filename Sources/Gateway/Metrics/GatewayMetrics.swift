import CoreMetrics
import Metrics
import Prometheus
import DecisionLog
import LogSink

/// The gateway's metrics, through swift-metrics into its own Prometheus registry (no global
/// bootstrap: every gateway in a process, and every test, has its own). Label values come
/// from the configuration and the code (listener, stage, check, action, target), never from
/// a client, so the number of series stays bounded.
final class GatewayMetrics: Sendable {
    let registry = PrometheusCollectorRegistry()
    let factory: PrometheusMetricsFactory

    init() {
        var f = PrometheusMetricsFactory(registry: registry)
        f.defaultDurationHistogramBuckets = [.milliseconds(1), .milliseconds(5), .milliseconds(25), .milliseconds(100),
                                             .milliseconds(500), .seconds(2), .seconds(10), .seconds(60)]
        factory = f
    }

    func connectionOpened(listener: String) {
        Counter(label: "mailgate_connections_total", dimensions: [("listener", listener)], factory: factory).increment()
        Meter(label: "mailgate_connections_open", dimensions: [("listener", listener)], factory: factory).increment()
    }

    func connectionClosed(listener: String) {
        Meter(label: "mailgate_connections_open", dimensions: [("listener", listener)], factory: factory).decrement()
    }

    func connectionRefused(listener: String, check: String) {
        Counter(label: "mailgate_connections_refused_total", dimensions: [("listener", listener), ("check", check)], factory: factory).increment()
    }

    func transaction(outcome: String) {
        Counter(label: "mailgate_transactions_total", dimensions: [("outcome", outcome)], factory: factory).increment()
    }

    func verdict(stage: String, check: String, action: String) {
        Counter(label: "mailgate_verdicts_total", dimensions: [("stage", stage), ("check", check), ("action", action)], factory: factory).increment()
    }

    func delivery(target: String, result: String, seconds: Double) {
        Timer(label: "mailgate_downstream_delivery_seconds", dimensions: [("target", target)], factory: factory).recordNanoseconds(Int64(seconds * 1e9))
        if result != "delivered" {
            Counter(label: "mailgate_downstream_failures_total", dimensions: [("target", target), ("result", result)], factory: factory).increment()
        }
    }

    /// A DNS resolution that went to the servers (cache hits are not counted).
    func dnsQuery(seconds: Double, result: String) {
        Timer(label: "mailgate_dns_query_seconds", factory: factory).recordNanoseconds(Int64(seconds * 1e9))
        Counter(label: "mailgate_dns_queries_total", dimensions: [("result", result)], factory: factory).increment()
    }

    /// A decision-log batch written and fsynced.
    func logWrite(seconds: Double, octets: Int) {
        Timer(label: "mailgate_log_write_seconds", factory: factory).recordNanoseconds(Int64(seconds * 1e9))
        Counter(label: "mailgate_log_written_octets_total", factory: factory).increment(by: octets)
    }

    /// A greylist store lookup, and whether the store answered.
    func greylistCheck(seconds: Double, ok: Bool) {
        Timer(label: "mailgate_greylist_check_seconds", factory: factory).recordNanoseconds(Int64(seconds * 1e9))
        if !ok { Counter(label: "mailgate_greylist_failures_total", factory: factory).increment() }
    }

    func policyReload(result: String) {
        Counter(label: "mailgate_policy_reloads_total", dimensions: [("result", result)], factory: factory).increment()
    }

    /// The Prometheus text exposition, with the gauges read at scrape time.
    func exposition(log: DecisionLog, sessions: Int, zones: [(zone: String, inService: Bool)], sink: PostgresLogSink? = nil) -> [UInt8] {
        if let sink {
            let s = sink.status
            Gauge(label: "mailgate_log_sink_lag_records", factory: factory).record(sink.lag)
            Gauge(label: "mailgate_log_sink_shipping", factory: factory).record(s.state == .shipping ? 1 : 0)
            Gauge(label: "mailgate_log_sink_failures", factory: factory).record(s.failures)
        }
        for z in zones {
            Gauge(label: "mailgate_dnsbl_zone_in_service", dimensions: [("zone", z.zone)], factory: factory).record(z.inService ? 1 : 0)
        }
        Gauge(label: "mailgate_log_queue_octets", factory: factory).record(log.pendingOctets)
        Gauge(label: "mailgate_log_healthy", factory: factory).record(log.isHealthy ? 1 : 0)
        Gauge(label: "mailgate_sessions_active", factory: factory).record(sessions)
        return registry.emitToBuffer()
    }
}
