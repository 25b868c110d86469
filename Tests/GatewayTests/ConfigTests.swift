import Foundation
import Testing
import SMTPProtocol
import Greylist
@testable import Gateway

@Suite struct ConfigTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    func errors(_ yaml: String) -> [String] {
        do {
            _ = try ConfigLoader.parse(yaml, file: "t.yaml")
            return []
        } catch let e as [ConfigError] {
            return e.map(\.description)
        } catch {
            return ["\(error)"]
        }
    }

    @Test func exampleConfigIsValidAndMatchesTheDefaults() throws {
        let c = try ConfigLoader.load(path: Self.root.appendingPathComponent("config/mailgate.example.yaml").path)
        let d = GatewayConfig()
        let l = try #require(c.listeners.first)
        let dl = try #require(d.listeners.first)
        #expect(l.bind == dl.bind)
        #expect(l.connectBacklog == dl.connectBacklog)
        #expect(l.helloName == dl.helloName)
        #expect(l.connectionTimeout == dl.connectionTimeout)
        #expect(l.connectionLimit == dl.connectionLimit)
        #expect(l.connectionLimitPerIP == dl.connectionLimitPerIP)
        #expect(l.maxmessagesize == dl.maxmessagesize)
        #expect(l.maxRecipients == dl.maxRecipients)
        #expect(l.authorizedAddresses == dl.authorizedAddresses)
        #expect(l.handlerchain == dl.handlerchain)
        #expect(c.domains == d.domains)
        #expect(c.downstream.targets == d.downstream.targets)
        #expect(c.log.path == d.log.path)
        #expect(c.spoolMemoryLimit == d.spoolMemoryLimit)
        #expect(c.greylist == d.greylist)
    }

    @Test func greylistSettingsAreCheckedWithTheirLine() throws {
        #expect(errors("greylist:\n  store: redis\n") == ["t.yaml:2: 'store' must be sqlite, postgresql or memory"])
        #expect(errors("greylist:\n  store: postgresql\n") == ["t.yaml:2: greylist store postgresql needs 'url'"])
        #expect(errors("greylist:\n  url: mysql://x\n  delay: 600\n  window: 600\n") == [
            "t.yaml:2: 'url' must be postgres://user:password@host:port/database", "t.yaml:2: greylist 'window' must be longer than 'delay'"])
        let c = try ConfigLoader.parse("greylist: {store: postgresql, url: 'postgres://gw@db.example:5433/mail', delay: 60, ipv4Prefix: 32, byReverseDomain: true}\n", file: "t.yaml")
        #expect(c.greylist.store == .postgresql)
        #expect(c.greylist.url == "postgres://gw@db.example:5433/mail")
        #expect(c.greylist.settings.delay == 60)
        #expect(c.greylist.key.v4Prefix == 32)
        #expect(c.greylist.key.byReverseDomain)
    }

    @Test func theLogSinkIsCheckedWithItsLine() throws {
        #expect(errors("log:\n  postgres: mysql://db/x\n  gateway: \"mx 1\"\n") == [
            "t.yaml:2: 'postgres' must be postgres://user:password@host:port/database",
            "t.yaml:3: 'gateway' must be 1 to 64 printable ASCII characters without spaces"])
        let c = try ConfigLoader.parse("log: {postgres: 'postgres://mailgate_writer:s3cret@db.example/mailgate', gateway: mx1}\n", file: "t.yaml")
        #expect(c.log.postgres == "postgres://mailgate_writer:s3cret@db.example/mailgate")
        #expect(c.log.gatewayName == "mx1")
        #expect(!GatewayConfig().log.gatewayName.isEmpty)
    }

    @Test func unknownKeysAreErrorsWithTheirLine() {
        let yaml = """
        listeners:
          - name: a
            bind: ["127.0.0.1:25"]
            maxMessageSize: 10
        domainz: [example.org]
        """
        #expect(errors(yaml) == [
            "t.yaml:4: unknown key 'maxMessageSize' in listener (known: addressBracketsEnforcement, authAllowPlaintext, authRequired, authorizedAddresses, bind, connectBacklog, connectionLimit, connectionLimitPerIP, connectionTimeout, dataDeadline, handlerchain, helloName, heloEhloEnforcement, maxRecipients, maxUnrecognizedCommands, maxmessagesize, name, policy, protocol, proxyAddresses, proxyRequired, proxyTimeout, smtpGreeting, socketMode, tls, tlsCertificates, tlsCiphers, tlsMinVersion, tlsRequired, verifyIdentity)",
            "t.yaml:5: unknown key 'domainz' in top level (known: allowUntrustedRouting, auth, checks, dns, domains, downstream, greylist, listeners, log, metrics, policy, policyWatch, shutdownGracePeriod, spool)",
        ])
    }

    /// A number that passes the parser but overflows later used to trap on every connection.
    @Test func hugeNumbersAreRefusedAtLoad() {
        let yaml = """
        listeners:
          - maxmessagesize: 9007199254740993
            connectionTimeout: 99999999999
            authorizedAddresses: [""]
        """
        #expect(errors(yaml) == [
            "t.yaml:2: 'maxmessagesize' must be at most \(ListenerConfig.maxMessageSizeCeiling)",
            "t.yaml:3: 'connectionTimeout' must be at most 86400",
            "t.yaml:4: bad network '' in authorizedAddresses",
        ])
        var l = ListenerConfig()
        l.maxmessagesize = Int.max
        #expect(l.maxMessageOctets == Int.max)
    }

    @Test func badValuesAreErrorsWithTheirLine() {
        let yaml = """
        listeners:
          - bind: ["nowhere"]
            connectionTimeout: -1
            heloEhloEnforcement: maybe
            authorizedAddresses: ["10.0.0.0/33"]
            handlerchain: [size, dnsbl]
        downstream:
          targets: ["ftp:x"]
        log:
          durability: sometimes
        """
        #expect(errors(yaml) == [
            "t.yaml:2: bad bind address 'nowhere' (want address:port, [v6]:port or unix:/path)",
            "t.yaml:3: 'connectionTimeout' must be at least 1",
            "t.yaml:4: 'heloEhloEnforcement' must be true or false",
            "t.yaml:5: bad network '10.0.0.0/33' in authorizedAddresses",
            "t.yaml:6: unknown check 'dnsbl' in handlerchain (known: helo, size)",
            "t.yaml:8: bad target 'ftp:x' (want smtp:host:port, lmtp:host:port, lmtp:unix:/path or maildir:PATH)",
            "t.yaml:10: 'durability' must be group or fsync",
        ])
    }

    @Test func jamesForms() throws {
        let c = try ConfigLoader.parse("""
        listeners:
          - name: a
            bind: ["127.0.0.1:2525", "[::1]:2525"]
            helloName: {autodetect: false, name: mx.example.org}
            authorizedAddresses: "127.*, 10.0.0.0/255.0.0.0, 2001:db8::/32"
          - name: b
            bind: ["127.0.0.1:2526"]
            helloName: ""
        """, file: "t.yaml")
        #expect(c.listeners[0].helloName == .name("mx.example.org"))
        #expect(c.listeners[1].helloName == .name("localhost"))
        #expect(c.listeners[0].bind == ["127.0.0.1:2525", "[::1]:2525"])
        #expect(c.listeners[0].authorizedAddresses.map(\.description) == ["127.0.0.0/8", "10.0.0.0/8", "2001:db8::/32"])
        #expect(c.listeners[0].isAuthorized(IPAddress("2001:db8::5")!))
        #expect(!c.listeners[0].isAuthorized(IPAddress("192.0.2.1")!))
    }

    @Test func laterIssueOptionsAreRefusedClearly() {
        #expect(errors("listeners:\n  - authRequired: true\n") == ["t.yaml:1: listener 'smtp': authRequired true needs auth.passwdFile"])
        #expect(errors("listeners:\n  - tls: true\n") == ["t.yaml:2: listener 'smtp': tls needs 'tlsCertificates'"])
        #expect(errors("listeners:\n  - protocol: lmtp\n") == [], "LMTP is implemented")
    }

    @Test func proxyKeys() throws {
        let c = try ConfigLoader.parse("listeners:\n  - bind: [\"0.0.0.0:25\"]\n    proxyRequired: true\n    proxyAddresses: [10.0.0.0/8, \"2001:db8::/32\"]\n    proxyTimeout: 3\n", file: "t.yaml")
        #expect(c.listeners[0].proxy.required && c.listeners[0].proxy.timeout == 3)
        #expect(c.listeners[0].proxy.addresses.map(\.description) == ["10.0.0.0/8", "2001:db8::/32"])
        #expect(errors("listeners:\n  - bind: [\"0.0.0.0:25\"]\n    proxyRequired: true\n")
                == ["t.yaml:2: listener 'smtp': proxyRequired needs proxyAddresses (the load balancers allowed to send the header)"])
        #expect(errors("listeners:\n  - bind: [\"0.0.0.0:25\"]\n    proxyAddresses: [10.0.0.0/8]\n")
                == ["t.yaml:2: listener 'smtp': proxyAddresses has no effect without proxyRequired: true"])
        #expect(errors("listeners:\n  - bind: [\"0.0.0.0:25\"]\n    proxyRequired: true\n    proxyAddresses: [10.0.0.300/8]\n")
                .contains("t.yaml:4: bad network '10.0.0.300/8' in proxyAddresses"))
    }
}
