import Codecs
import Platform

/// The digests of the tensors a ``BandSchedule`` writes, fed its bands in order: after each
/// round the two hands' bands go through the SHA unit together over the length they share.
struct BandHasher {
    /// The tensor a hand holds: its digest so far and the bytes of its band not hashed yet.
    final class Hand: PendingDigest {
        let job: Int
        var sha = SHA256Stream()
        var pending = UnsafeRawBufferPointer(start: nil, count: 0)
        /// The band `pending` lies in, kept until it is hashed.
        var band: EncodedBand?
        /// The tensor's last band has come.
        var complete = false

        init(job: Int) { self.job = job }
    }

    private var hands: [Hand?] = [nil, nil]
    /// Digests by job; a tensor with no bands (no elements) keeps the digest of no bytes.
    private(set) var digests: [String]

    init(jobs: Int) {
        var empty = SHA256Stream()
        digests = [String](repeating: empty.finalizeHex(), count: jobs)
    }

    /// Takes the band of `step`, hashing what the hands hold when the step ends a round.
    mutating func add(_ band: EncodedBand, for step: BandSchedule.Step) {
        // What a round without bands would have hashed alone.
        if hands[step.hand]?.pending.isEmpty == false { settle(step.hand, all: true) }
        let hand = hands[step.hand] ?? Hand(job: step.job)
        assert(hand.job == step.job, "a hand takes its next tensor only once the last one is hashed")
        hand.band = band
        hand.pending = band.bytes
        hand.complete = step.last
        hands[step.hand] = hand
        guard step.endsRound else { return }
        SHA256Stream.hashPending(hands)
        for h in hands.indices { settle(h, all: false) }
    }

    /// Hashes what is left in both hands and returns every digest.
    mutating func finish() -> [String] {
        for h in hands.indices { settle(h, all: true) }
        return digests
    }

    /// Lets go of hand `h`'s band once hashed (first hashing what is left, if `all`), and
    /// records its digest when the tensor is complete.
    private mutating func settle(_ h: Int, all: Bool) {
        guard let hand = hands[h] else { return }
        if all, !hand.pending.isEmpty {
            hand.sha.update(hand.pending)
            hand.pending = UnsafeRawBufferPointer(start: nil, count: 0)
        }
        guard hand.pending.isEmpty else { return }
        if let (file, range) = hand.band?.mapped { file.release(range) }
        hand.band = nil
        if hand.complete {
            digests[hand.job] = hand.sha.finalizeHex()
            hands[h] = nil
        }
    }
}
