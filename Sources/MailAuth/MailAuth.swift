/// MailAuth: message authentication (SPF, DKIM) for the checks.
///
/// DKIM verification uses libopendkim; SPF is evaluated in Swift on the project's resolver.
/// The foundation links libopendkim here so the build and CI install it once; the verifiers
/// arrive with their issues.
import COpenDKIM

public enum OpenDKIMLibrary {
    /// The linked libopendkim version, e.g. "2.11.0".
    public static var version: String {
        let v = dkim_libversion()
        return "\(v >> 24).\((v >> 16) & 0xff).\((v >> 8) & 0xff)"
    }
}
