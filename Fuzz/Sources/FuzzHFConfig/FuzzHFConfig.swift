import FuzzDriver
import FuzzHarness

/// One input (libFuzzer's entry point).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    FuzzTarget.hfConfig.run(data, size)
}

/// The executable's entry point (SwiftPM makes main an alias of <Module>_main): libFuzzer's
/// driver over FuzzTarget/hfConfig (built with -sanitize=fuzzer; see Fuzz/build.sh).
@_cdecl("FuzzHFConfig_main")
public func fuzzMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> Int32 {
    tessera_fuzz_main(argc, argv) { data, size in FuzzTarget.hfConfig.run(data, size) }
}
