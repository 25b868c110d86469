/// DNSResolver: the project's asynchronous DNS stub resolver.
///
/// This module owns every DNS question the gateway asks (DNSBL, SPF, DKIM keys, HELO and
/// reverse-name checks). It uses libldns for the wire format only, never for transport.
/// The foundation links libldns here so that the build, the README and CI install it once;
/// the resolver itself arrives with the DNS issue and plugs into the checks through the
/// stage pipeline.
import CLDNS

public enum LDNSLibrary {
    /// The version string of the linked libldns, e.g. "1.8.3".
    public static var version: String { String(cString: ldns_version()) }
}
