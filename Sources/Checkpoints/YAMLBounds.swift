import Platform
import Yams

/// Bounds on a model config's YAML that keep the YAML library from taking the process down.
///
/// Nesting, found without parsing the text: the YAML library
/// builds and walks its tree by recursion, so a config nested thousands of levels deep
/// (`a: [[[[…` or `- - - - …`, a few KB) overflowed the stack and killed the process; a text
/// whose bound is too high is refused before the library sees it.
///
/// The bound never underestimates: on each line it adds twice the indentation plus one (a
/// block collection is more indented than its parent, or a sequence at its key's column), every
/// `-`, `?` and `:` followed by a space or the line's end (the indicators that open a
/// collection on the same line), and the depth of open `[` and `{` (carried across lines).
/// Quoted scalars (from a quote at the start of a token) and comments (`#` after a space or
/// at a line's start) are skipped as the YAML grammar reads them; anything else is counted,
/// which can only overestimate. A real model config stays far below the limit (about 20).
enum YAMLBounds {
    /// The deepest bound accepted: well inside the stack of any thread here (the library
    /// takes about 2 KB of stack a level; 8 MB overflowed between 2,000 and 5,000 levels).
    static let limit = 512

    /// Throws when the bound on `text`'s nesting exceeds ``limit``, naming the line.
    static func checkNesting(_ text: String, file: String) throws(TesseraError) {
        var flow = 0, quote: UInt8? = nil, lineNumber = 0
        for line in text.utf8.split(separator: 0x0A, omittingEmptySubsequences: false) {
            lineNumber += 1
            let bytes = Array(line)
            var indent = 0
            while indent < bytes.count, bytes[indent] == 0x20 { indent += 1 }
            var indicators = 0, deepestFlow = flow, i = 0
            while i < bytes.count {
                let c = bytes[i], previous: UInt8 = i == 0 ? 0x20 : bytes[i - 1]
                if let q = quote {
                    if c == 0x5C, q == 0x22 { i += 2; continue } // an escape in a double-quoted scalar
                    if c == q { quote = nil }
                    i += 1
                    continue
                }
                let tokenStart = [0x20, 0x09, 0x5B, 0x7B, 0x2C].contains(previous)
                if (c == 0x22 || c == 0x27), tokenStart { quote = c }
                else if c == 0x23, previous == 0x20 || previous == 0x09 { break } // a comment
                else if c == 0x5B || c == 0x7B { flow += 1; deepestFlow = max(deepestFlow, flow) }
                else if c == 0x5D || c == 0x7D { flow = max(0, flow - 1) }
                else if c == 0x2D || c == 0x3F || c == 0x3A, i + 1 == bytes.count || bytes[i + 1] == 0x20 { indicators += 1 }
                i += 1
            }
            let bound = 2 * (indent + 1) + indicators + deepestFlow
            guard bound <= limit else {
                throw TesseraError(.corrupt, "line \(lineNumber) may nest \(bound) levels deep (at most \(limit) are read): "
                    + "not a model config", file: file)
            }
        }
    }

    /// The most nodes a config may hold once its aliases are expanded (a real one: hundreds).
    static let nodeLimit = 1_000_000

    /// Throws when `node`, with every alias expanded, holds more than ``nodeLimit`` nodes:
    /// anchors and aliases nested ten deep (`l1: &l1 [*l0, *l0, …]`, a few hundred bytes) expand
    /// to billions, which the conversion to dictionaries walked for minutes while memory grew.
    /// Counted with an explicit stack, stopping at the limit.
    static func checkSize(_ node: Node, file: String) throws(TesseraError) {
        var pending = [node], count = 0
        while let next = pending.popLast() {
            count += 1
            guard count <= nodeLimit else {
                throw TesseraError(.corrupt, "holds more than \(nodeLimit) values once its aliases are expanded: not a model config", file: file)
            }
            switch next {
            case .scalar: break
            case .sequence(let items): pending.append(contentsOf: items)
            case .mapping(let pairs): for (key, value) in pairs { pending.append(key); pending.append(value) }
            }
        }
    }
}
