#![no_main]
// The property is in src/fuzzing.rs, where tests/fuzz_corpus.rs replays the corpus.
libfuzzer_sys::fuzz_target!(|data: &[u8]| cartstream::fuzzing::signal(data));
