/// Tessera's own version, printed by `tessera --version` and recorded in what it writes.
public enum TesseraVersion {
    /// Semantic version of the tool (the store's layout has its own `format_version`).
    public static let string = "0.3.0"
}
