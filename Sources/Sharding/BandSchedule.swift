/// The order in which a compressed store's bands (the chunks sharing a first index: a run of
/// whole rows) are written, and so where each chunk lands in the file. Tensors are taken two at
/// a time, in the order given, one in each of two hands, and the hands' bands alternate so that
/// both digests go through the SHA unit together. A hand takes its next band only once the last
/// one is hashed: after each round (a band for each hand that was ready) the bands in hand are
/// hashed over the length they share, or wholly when only one hand has bytes. The order depends
/// on the band sizes only, never on timing or the number of workers, so a store is laid out the
/// same way on every run.
struct BandSchedule: Sendable {
    /// One band to write.
    struct Step: Sendable, Equatable {
        /// The tensor, as an index into the sizes the schedule was made from.
        var job: Int
        /// The band, counted from the tensor's first rows.
        var band: Int
        /// The hand (0 or 1) holding the tensor.
        var hand: Int
        /// The tensor's last band.
        var last: Bool
        /// The last band of its round: the bands in hand are hashed after it.
        var endsRound = false
    }

    let steps: [Step]

    /// The schedule of tensors whose bands hold `bandBytes[job]` bytes each, in order.
    init(bandBytes: [[Int]]) {
        var hands: [(job: Int, band: Int, unhashed: Int)?] = [nil, nil]
        var nextJob = 0
        var steps: [Step] = []
        while true {
            let roundStart = steps.count
            for h in hands.indices {
                while true {
                    if hands[h] == nil {
                        guard nextJob < bandBytes.count else { break }
                        hands[h] = (nextJob, 0, 0)
                        nextJob += 1
                    }
                    guard let hand = hands[h], hand.unhashed == 0 else { break }
                    let bands = bandBytes[hand.job]
                    guard hand.band < bands.count else {
                        hands[h] = nil   // done: the hand takes the next tensor
                        continue
                    }
                    steps.append(Step(job: hand.job, band: hand.band, hand: h, last: hand.band == bands.count - 1))
                    hands[h] = (hand.job, hand.band + 1, bands[hand.band])
                    break
                }
            }
            guard hands.contains(where: { $0 != nil }) else { break }
            if steps.count > roundStart { steps[steps.count - 1].endsRound = true }
            let ready = hands.indices.filter { (hands[$0]?.unhashed ?? 0) > 0 }
            let shared = ready.count == 2 ? ready.map { hands[$0]!.unhashed }.min()! : Int.max
            for h in ready { hands[h]!.unhashed -= min(shared, hands[h]!.unhashed) }
        }
        self.steps = steps
    }
}
