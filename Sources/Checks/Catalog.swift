import Foundation
import PolicyEngine
import SMTPProtocol
import DNSResolver
import Yams
import Greylist

/// Every check that exists, for the policy compiler: its name, stages, the values of its
/// result, the facts it reports and its failure default; and how to build it from its
/// settings. A new check adds one entry to `catalog` and one case to `make`.
public struct CheckCatalog: CheckFactory {
    let resolverBox: DNSResolver?
    public let health: ZoneHealth
    /// The greylist store, keys and clock that the greylist check uses.
    public let greylist: GreylistService

    /// `resolver`: the one the DNS checks ask (default: the servers of /etc/resolv.conf).
    /// `greylist`: the gateway's greylist (default: in memory, for tests and simulations).
    public init(resolver: DNSResolver? = nil, health: ZoneHealth = ZoneHealth(), greylist: GreylistService = GreylistService()) {
        self.resolverBox = resolver
        self.health = health
        self.greylist = greylist
    }

    var resolver: DNSResolver { resolverBox ?? DNSResolver(config: ResolverConfig(servers: NameServer.fromResolvConf())) }

    public var catalog: [CheckInfo] {
        [
            CheckInfo(name: "size", stages: [.mail, .message], results: ["unlimited", "undeclared", "pass", "oversize", "skipped"],
                      defaultOnError: .tempfail),
            CheckInfo(name: "helo", stages: [.helo], results: ["pass", "invalid", "skipped", "none"], defaultOnError: .pass),
            CheckInfo(name: "dnsbl", stages: [.connect], results: DNSBLCheck.results, facts: DNSBLCheck.facts, defaultOnError: .pass),
            CheckInfo(name: "rdns", stages: [.connect], results: ReverseDNSCheck.results, facts: ReverseDNSCheck.facts, defaultOnError: .pass),
            CheckInfo(name: "helodns", stages: [.helo], results: HeloDNSCheck.results, facts: HeloDNSCheck.facts, defaultOnError: .pass),
            CheckInfo(name: "spf", stages: [.helo, .mail], results: SPFCheck.results, facts: SPFCheck.facts, defaultOnError: .tempfail),
            CheckInfo(name: "dkim", stages: [.message], results: DKIMCheck.results, facts: DKIMCheck.facts, defaultOnError: .pass),
            CheckInfo(name: "greylist", stages: [.rcpt, .message], results: GreylistCheck.results, facts: GreylistCheck.facts, defaultOnError: .pass),
        ]
    }

    public func make(_ name: String, settings: Node?, reader: inout YAMLReader) -> (any Check)? {
        switch name {
        case "size":
            _ = reader.mapping(settings, "checks.size", allowed: [])
            return SizeCheck()
        case "helo":
            var o = HeloCheck.Options()
            let before = reader.diagnostics.count
            for (k, v) in reader.mapping(settings, "checks.helo", allowed: ["literalMustMatchClient", "checkAuthorized", "reject", "score"]) {
                switch k {
                case "literalMustMatchClient": o.literalMustMatchClient = reader.bool(v, k) ?? o.literalMustMatchClient
                case "checkAuthorized": o.checkAuthorized = reader.bool(v, k) ?? o.checkAuthorized
                case "reject": o.reject = reader.bool(v, k) ?? o.reject
                default: o.score = reader.number(v, k) ?? o.score
                }
            }
            return reader.diagnostics.count == before ? HeloCheck(options: o) : nil
        case "dnsbl":
            return makeDNSBL(settings, reader: &reader)
        case "greylist":
            return makeGreylist(settings, reader: &reader)
        case "dkim":
            var o = DKIMCheck.Options()
            let before = reader.diagnostics.count
            for (k, v) in reader.mapping(settings, "checks.dkim", allowed: ["maxSignatures", "keyTimeout", "allFailedScore"]) {
                switch k {
                case "maxSignatures": o.maxSignatures = reader.int(v, k, min: 1) ?? o.maxSignatures
                case "keyTimeout":
                    if let d = reader.number(v, k) { if d > 0 && d <= 60 { o.keyTimeout = d } else { reader.fail(v, "'keyTimeout' must be between 0 and 60 seconds") } }
                default: o.allFailedScore = reader.number(v, k) ?? 0
                }
            }
            return reader.diagnostics.count == before ? DKIMCheck(options: o, resolver: resolver) : nil
        case "spf":
            var o = SPFCheck.Options()
            let before = reader.diagnostics.count
            for (k, v) in reader.mapping(settings, "checks.spf", allowed: ["fail", "failScore", "softfailScore", "neutralScore", "noneScore",
                                                                             "permerror", "permerrorScore", "heloFail", "heloFailScore", "checkAuthorized"]) {
                switch k {
                case "fail": o.fail = effect(v, k, &reader)
                case "permerror": o.permerror = effect(v, k, &reader)
                case "heloFail": o.heloFail = effect(v, k, &reader)
                case "failScore": o.failScore = reader.number(v, k) ?? o.failScore
                case "softfailScore": o.softfailScore = reader.number(v, k) ?? o.softfailScore
                case "neutralScore": o.neutralScore = reader.number(v, k) ?? o.neutralScore
                case "noneScore": o.noneScore = reader.number(v, k) ?? o.noneScore
                case "permerrorScore": o.permerrorScore = reader.number(v, k) ?? o.permerrorScore
                case "heloFailScore": o.heloFailScore = reader.number(v, k) ?? o.heloFailScore
                default: o.checkAuthorized = reader.bool(v, k) ?? false
                }
            }
            return reader.diagnostics.count == before ? SPFCheck(options: o, resolver: resolver) : nil
        case "rdns":
            var o = ReverseDNSCheck.Options()
            let before = reader.diagnostics.count
            for (k, v) in reader.mapping(settings, "checks.rdns", allowed: ["requireConfirmed", "unconfirmedScore", "dynamic", "dynamicScore",
                                                                              "dynamicPatterns", "checkAuthorized"]) {
                switch k {
                case "requireConfirmed": o.requireConfirmed = effect(v, k, &reader)
                case "dynamic": o.dynamic = effect(v, k, &reader)
                case "unconfirmedScore": o.unconfirmedScore = reader.number(v, k) ?? 1
                case "dynamicScore": o.dynamicScore = reader.number(v, k) ?? 1
                case "checkAuthorized": o.checkAuthorized = reader.bool(v, k) ?? false
                default: o.patterns = patterns(v, &reader)
                }
            }
            if o.dynamic != .off && o.patterns.isEmpty { reader.fail(settings, "checks.rdns: 'dynamic' needs 'dynamicPatterns' (a pattern list file)") }
            return reader.diagnostics.count == before ? ReverseDNSCheck(options: o, resolver: resolver) : nil
        case "helodns":
            var o = HeloDNSCheck.Options()
            let before = reader.diagnostics.count
            for (k, v) in reader.mapping(settings, "checks.helodns", allowed: ["requireResolves", "resolvesScore", "requireMatchesPTR", "matchScore", "checkAuthorized"]) {
                switch k {
                case "requireResolves": o.requireResolves = effect(v, k, &reader)
                case "requireMatchesPTR": o.requireMatchesPTR = effect(v, k, &reader)
                case "resolvesScore": o.resolvesScore = reader.number(v, k) ?? 1
                case "matchScore": o.matchScore = reader.number(v, k) ?? 1
                default: o.checkAuthorized = reader.bool(v, k) ?? false
                }
            }
            return reader.diagnostics.count == before ? HeloDNSCheck(options: o, resolver: resolver) : nil
        default:
            return nil
        }
    }
}

extension CheckCatalog {
    func makeDNSBL(_ settings: Node?, reader: inout YAMLReader) -> (any Check)? {
        var o = DNSBLCheck.Options()
        let before = reader.diagnostics.count
        var zonesNode: Node?
        for (k, v) in reader.mapping(settings, "checks.dnsbl", allowed: ["zones", "timeout", "allow", "checkAuthorized", "deferToRcpt"]) {
            switch k {
            case "zones": zonesNode = v
            case "timeout":
                if let d = reader.number(v, k) { if d > 0 && d <= 60 { o.timeout = d } else { reader.fail(v, "'timeout' must be between 0 and 60 seconds") } }
            case "checkAuthorized": o.checkAuthorized = reader.bool(v, k) ?? false
            case "deferToRcpt": o.deferToRcpt = reader.bool(v, k) ?? false
            default:
                o.allow += networks(v, k, &reader)
            }
        }
        guard let zones = zonesNode?.sequence, !zones.isEmpty else {
            reader.fail(zonesNode ?? settings, "checks.dnsbl needs 'zones': a list of zones")
            return nil
        }
        for zn in zones {
            var z: DNSBLCheck.Zone?
            var fields: [(String, Node)] = []
            if let name = zn.string { z = DNSBLCheck.Zone(zone: name) } else {
                fields = reader.mapping(zn, "dnsbl zone", allowed: ["zone", "type", "answers", "bitmask", "action", "score", "reply", "displayName", "ipv4", "ipv6"])
                if let n = fields.first(where: { $0.0 == "zone" }), let name = reader.string(n.1, "zone") { z = DNSBLCheck.Zone(zone: name) }
            }
            guard var zone = z, AddressParser.isDomain(Substring(zone.zone), allowUTF8: false) else { reader.fail(zn, "a zone needs 'zone: NAME', a DNS name"); continue }
            for (k, v) in fields {
                switch k {
                case "type":
                    if let t = v.string.flatMap(DNSBLCheck.Zone.Kind.init(rawValue:)) { zone.kind = t } else { reader.fail(v, "'type' must be block or allow") }
                case "answers":
                    if let m = v.mapping {
                        for (ak, av) in m {
                            guard let ip = ak.string.flatMap({ IPAddress($0) }), case .v4(let a) = ip, a >> 24 == 127 else { reader.fail(ak, "answers are addresses in 127.0.0.0/8"); continue }
                            zone.answers[ip] = av.string ?? ip.description
                        }
                    } else if let l = v.sequence {
                        for item in l {
                            guard let ip = item.string.flatMap({ IPAddress($0) }), case .v4(let a) = ip, a >> 24 == 127 else { reader.fail(item, "answers are addresses in 127.0.0.0/8"); continue }
                            zone.answers[ip] = ip.description
                        }
                    } else { reader.fail(v, "'answers' is a list of addresses or a mapping of address to label") }
                case "bitmask":
                    let t = v.string ?? ""
                    let val = t.hasPrefix("0x") ? UInt8(t.dropFirst(2), radix: 16) : UInt8(t)
                    if let b = val, b != 0 { zone.bitmask = b } else { reader.fail(v, "'bitmask' must be 1 to 255 (or 0x01 to 0xff)") }
                case "action":
                    if let e = v.string.flatMap(DNSBLCheck.Zone.Effect.init(rawValue:)) { zone.effect = e } else { reader.fail(v, "'action' must be reject, score or none") }
                case "score": zone.score = reader.number(v, k) ?? 0
                case "reply": if let r = reader.string(v, k) { zone.reply = r }
                case "displayName": zone.displayName = reader.string(v, k)
                case "ipv6": zone.ipv6 = reader.bool(v, k) ?? true
                case "ipv4": zone.ipv4 = reader.bool(v, k) ?? true
                default: break
                }
            }
            if zone.bitmask != nil && !zone.answers.isEmpty { reader.fail(zn, "a zone has 'answers' or 'bitmask', not both") }
            if zone.effect == .score && zone.score == 0 { reader.fail(zn, "'action: score' needs a 'score'") }
            o.zones.append(zone)
        }
        guard reader.diagnostics.count == before else { return nil }
        return DNSBLCheck(options: o, resolver: resolver, health: health)
    }
}

extension CheckCatalog {
    func effect(_ n: Node, _ key: String, _ reader: inout YAMLReader) -> DNSCheckEffect {
        if let e = n.string.flatMap(DNSCheckEffect.init(rawValue:)) { return e }
        reader.fail(n, "'\(key)' must be off, score or reject")
        return .off
    }

    /// The entries of a list file (one a line, `#` comments), relative to the policy file,
    /// each with a parser that returns its value or an error for its line.
    func listFile<T>(_ n: Node, _ key: String, _ reader: inout YAMLReader, _ parse: (String) -> Result<T, PolicyCompileMessage>) -> [T] {
        guard let f = reader.string(n, key) else { return [] }
        let path = f.hasPrefix("/") ? f : ((reader.file as NSString).deletingLastPathComponent as NSString).appendingPathComponent(f)
        guard let data = FileManager.default.contents(atPath: path) else { reader.fail(n, "list '\(f)' cannot be read"); return [] }
        var out: [T] = []
        for (i, raw) in String(decoding: data, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let entry = (raw.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first ?? "").trimmingCharacters(in: .whitespaces)
            if entry.isEmpty { continue }
            switch parse(entry) {
            case .success(let v): out.append(v)
            case .failure(let m): reader.diagnostics.append(PolicyDiagnostic(file: path, SourcePosition(line: i + 1, column: 1), m.text))
            }
        }
        return out
    }

    /// A pattern list file (one glob a line).
    func patterns(_ n: Node, _ reader: inout YAMLReader) -> [Glob] {
        listFile(n, "dynamicPatterns", &reader) { Glob.parse($0) }
    }

    /// An address list file (one address or CIDR network a line).
    func networks(_ n: Node, _ key: String, _ reader: inout YAMLReader) -> [IPNetwork] {
        listFile(n, key, &reader) { e in IPNetwork(e).map { .success($0) } ?? .failure(PolicyCompileMessage("'\(e)' is not an address or network")) }
    }

    /// A domain list file (one domain a line, lower-cased, trailing dot dropped).
    func domains(_ n: Node, _ key: String, _ reader: inout YAMLReader) -> [String] {
        listFile(n, key, &reader) { e in
            var d = e.lowercased()
            if d.hasPrefix("*.") { d.removeFirst(2) }
            if d.hasSuffix(".") { d.removeLast() }
            return AddressParser.isDomain(Substring(d), allowUTF8: true) ? .success(d) : .failure(PolicyCompileMessage("'\(e)' is not a domain name"))
        }
    }

    func makeGreylist(_ settings: Node?, reader: inout YAMLReader) -> (any Check)? {
        var o = GreylistCheck.Options()
        let before = reader.diagnostics.count
        for (k, v) in reader.mapping(settings, "checks.greylist", allowed: ["mode", "stage", "allow"]) {
            switch k {
            case "mode":
                if let m = v.string.flatMap(GreylistCheck.Mode.init(rawValue:)) { o.mode = m } else { reader.fail(v, "'mode' must be all or rules") }
            case "stage":
                switch v.string {
                case "rcpt": o.stage = .rcpt
                case "message": o.stage = .message
                default: reader.fail(v, "'stage' must be rcpt or message (end of DATA)")
                }
            default:
                for (lk, lv) in reader.mapping(v, "checks.greylist.allow", allowed: ["clients", "reverseDomains", "senderDomains", "recipients"]) {
                    switch lk {
                    case "clients": o.allowClients = networks(lv, lk, &reader)
                    case "reverseDomains": o.allowReverseDomains = domains(lv, lk, &reader)
                    case "senderDomains": o.allowSenderDomains = domains(lv, lk, &reader)
                    default:
                        o.allowRecipients = listFile(lv, lk, &reader) { e in
                            let r = e.lowercased()
                            let parts = r.split(separator: "@", omittingEmptySubsequences: false)
                            return parts.count == 2 && !(parts[0].isEmpty && parts[1].isEmpty) ? .success(r)
                                : .failure(PolicyCompileMessage("'\(e)' is not user@domain, @domain or user@"))
                        }
                    }
                }
            }
        }
        return reader.diagnostics.count == before ? GreylistCheck(options: o, service: greylist) : nil
    }
}
