import Gateway; import DNSResolver; import MailAuth; print(LDNSLibrary.version, OpenDKIMLibrary.version)
