import ArgumentParser
import Foundation
import Gateway

/// `mailgate user add|remove|list|passwd FILE …`: the passwd-file SMTP AUTH reads. A
/// password is read from the terminal without echo (twice), or one line from stdin when it
/// is not a terminal; it is never printed or taken as an argument.
struct UserCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "user", abstract: "Manage the SMTP AUTH passwd-file.",
                                                    subcommands: [Add.self, Passwd.self, Remove.self, List.self])

    struct Add: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Add a user (or replace its password).")
        @Argument(help: "The passwd-file (created, mode 0600, if missing).") var file: String
        @Argument(help: "User name, e.g. alice or alice@example.org.") var user: String
        @Option(name: .customLong("address"), help: "A sender address the user may use (repeatable); default: the user name if it is an address, else user@ any local domain.")
        var addresses: [String] = []
        @Option(help: "Hash scheme: CRYPT (yescrypt), SHA512-CRYPT, SHA256-CRYPT or BLF-CRYPT.") var scheme = PasswordHash.defaultScheme

        func run() throws {
            try setPassword(file: file, user: user, scheme: scheme, addresses: addresses.isEmpty ? nil : addresses, mustExist: false)
            print("\(user): password set in \(file)")
        }
    }

    struct Passwd: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Change a user's password.")
        @Argument var file: String
        @Argument var user: String
        @Option(help: "Hash scheme.") var scheme = PasswordHash.defaultScheme

        func run() throws {
            try setPassword(file: file, user: user, scheme: scheme, addresses: nil, mustExist: true)
            print("\(user): password changed")
        }
    }

    struct Remove: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove a user.")
        @Argument var file: String
        @Argument var user: String

        func run() throws {
            var f = try PasswdFile.load(path: file)
            guard f.remove(user: user) else { throw ValidationError("no user '\(user)' in \(file)") }
            try f.write(to: file)
            print("\(user): removed")
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The users, their scheme and addresses (never a hash).")
        @Argument var file: String

        func run() throws {
            for e in try PasswdFile.load(path: file).entries {
                print("\(e.user)  {\(e.scheme)}" + (e.addresses.isEmpty ? "" : "  " + e.addresses.joined(separator: ",")))
            }
        }
    }
}

/// Reads the password and writes its hash for `user` (an existing user when `mustExist`).
func setPassword(file: String, user: String, scheme: String, addresses: [String]?, mustExist: Bool) throws {
    var f = mustExist || FileManager.default.fileExists(atPath: file) ? try PasswdFile.load(path: file) : PasswdFile()
    if mustExist && f.entry(for: user) == nil { throw ValidationError("no user '\(user)' in \(file)") }
    try f.set(user: user, hashed: try PasswordHash.make(try readPassword(confirm: true), scheme: scheme.uppercased()), addresses: addresses)
    try f.write(to: file)
}

/// The password from the terminal (echo off, asked twice) or the first line of stdin.
func readPassword(confirm: Bool) throws -> String {
    guard isatty(STDIN_FILENO) == 1 else {
        guard let line = readLine(strippingNewline: true), !line.isEmpty else { throw ValidationError("no password on stdin") }
        return line
    }
    func ask(_ prompt: String) -> String? {
        FileHandle.standardError.write(Data(prompt.utf8))
        var old = termios()
        tcgetattr(STDIN_FILENO, &old)
        var quiet = old
        quiet.c_lflag &= ~tcflag_t(ECHO)
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet)
        defer {
            tcsetattr(STDIN_FILENO, TCSAFLUSH, &old)
            FileHandle.standardError.write(Data("\n".utf8))
        }
        return readLine(strippingNewline: true)
    }
    guard let first = ask("Password: "), !first.isEmpty else { throw ValidationError("empty password") }
    if confirm, ask("Again: ") != first { throw ValidationError("the passwords differ") }
    return first
}
