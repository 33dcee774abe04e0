import Testing

/// The pairs of `a` and `b` after expecting both to hold the same number of elements: `zip`
/// alone stops at the shorter side and would leave the rest unchecked.
public func zipSameCount<A: Collection, B: Collection>(_ a: A, _ b: B, _ comment: Comment? = nil,
                                                      sourceLocation: SourceLocation = #_sourceLocation) -> Zip2Sequence<A, B> {
    #expect(a.count == b.count, "\(comment.map { "\($0): " } ?? "")counts differ", sourceLocation: sourceLocation)
    return zip(a, b)
}

/// Each element of `elements` with the one after it.
public func adjacentPairs<C: Collection>(_ elements: C) -> Zip2Sequence<C, C.SubSequence> {
    zip(elements, elements.dropFirst())
}

/// The largest absolute difference between `actual` and `expected`, element by element, after
/// expecting the same, non-zero number of elements in both; infinity when they differ in count
/// or are empty, so no comparison passes for want of elements.
public func maxDifference<A: BinaryFloatingPoint, E: BinaryFloatingPoint>(
    _ actual: some Collection<A>, _ expected: some Collection<E>, _ comment: Comment? = nil,
    sourceLocation: SourceLocation = #_sourceLocation
) -> Double {
    guard expectSameNonZeroCount(actual, expected, comment, sourceLocation: sourceLocation) else { return .infinity }
    return zip(actual, expected).map { abs(Double($0) - Double($1)) }.max()!
}

/// Expects `actual` and `expected` to hold the same, non-zero number of elements, each within
/// `tolerance` of its counterpart; returns the largest difference.
@discardableResult
public func expectElementsClose<A: BinaryFloatingPoint, E: BinaryFloatingPoint>(
    _ actual: some Collection<A>, _ expected: some Collection<E>, tolerance: Double, _ comment: Comment? = nil,
    sourceLocation: SourceLocation = #_sourceLocation
) -> Double {
    let worst = maxDifference(actual, expected, comment, sourceLocation: sourceLocation)
    #expect(worst <= tolerance, "\(comment.map { "\($0): " } ?? "")largest difference \(worst) over \(tolerance)",
            sourceLocation: sourceLocation)
    return worst
}

/// Expects `actual` and `expected` to hold the same, non-zero number of elements, all equal; a
/// failure names how many differ and the first that does, instead of printing both whole.
public func expectIdentical<T: Equatable>(_ actual: some Collection<T>, _ expected: some Collection<T>, _ comment: Comment? = nil,
                                          sourceLocation: SourceLocation = #_sourceLocation) {
    guard expectSameNonZeroCount(actual, expected, comment, sourceLocation: sourceLocation) else { return }
    let prefix = comment.map { "\($0): " } ?? ""
    let differing = zip(actual, expected).enumerated().filter { $0.element.0 != $0.element.1 }.map(\.offset)
    let allEqual = differing.isEmpty // a Bool, so a failure does not print every differing index
    #expect(allEqual, "\(prefix)\(differing.count) of \(expected.count) values differ, the first at index \(differing.first ?? -1)",
            sourceLocation: sourceLocation)
}

/// Expects `actual` and `expected` to hold the same, non-zero number of elements; whether they do.
private func expectSameNonZeroCount(_ actual: some Collection, _ expected: some Collection, _ comment: Comment?,
                                    sourceLocation: SourceLocation) -> Bool {
    let prefix = comment.map { "\($0): " } ?? ""
    #expect(actual.count == expected.count, "\(prefix)\(actual.count) values, \(expected.count) expected", sourceLocation: sourceLocation)
    #expect(!expected.isEmpty, "\(prefix)nothing to compare", sourceLocation: sourceLocation)
    return actual.count == expected.count && !expected.isEmpty
}
