import Foundation
import Platform

/// Bytes from a size such as 512M, 8G, 1.5GiB or 1000000 (K, M, G, T: powers of 1024).
func parseByteSize(_ text: String, option: String) throws(TesseraError) -> Int {
    let units: [(String, Double)] = [("TIB", 0x1p40), ("GIB", 0x1p30), ("MIB", 0x1p20), ("KIB", 0x1p10), ("TB", 0x1p40), ("GB", 0x1p30),
                                     ("MB", 0x1p20), ("KB", 0x1p10), ("T", 0x1p40), ("G", 0x1p30), ("M", 0x1p20), ("K", 0x1p10), ("B", 1)]
    let upper = text.trimmingCharacters(in: .whitespaces).uppercased()
    let (number, scale) = units.first { upper.hasSuffix($0.0) }.map { (String(upper.dropLast($0.0.count)), $0.1) } ?? (upper, 1)
    guard let value = Double(number.trimmingCharacters(in: .whitespaces)), value > 0 else {
        throw TesseraError(.invalidArgument, "\(option) takes a size such as 512M or 8G, not '\(text)'")
    }
    return Int(value * scale)
}

/// The integers of a comma-separated list such as `3,5` (none from an empty text unless
/// `nonEmpty`); anything else is an error naming `option`.
func parseIntegers(_ text: String, option: String, nonEmpty: Bool = false) throws(TesseraError) -> [Int] {
    let parsed = text.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
    guard !(nonEmpty && parsed.isEmpty), parsed.allSatisfy({ $0 != nil }) else {
        throw TesseraError(.invalidArgument, "\(option) takes comma-separated integers, not '\(text)'")
    }
    return parsed.map { $0! }
}
