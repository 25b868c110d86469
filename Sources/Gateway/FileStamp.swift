import Foundation

/// What a file looks like from outside (`path:size:mtime`, or `path:-` when it cannot be
/// read): the policy and certificate watchers reload when it changes.
enum FileStamp {
    static func of(_ path: String) -> String {
        var st = stat()
        guard stat(path, &st) == 0 else { return "\(path):-" }
        return "\(path):\(st.st_size):\(st.st_mtim.tv_sec).\(st.st_mtim.tv_nsec)"
    }
}
