//! The one integration-test binary. Every test here runs the real `canary` binary or
//! the library's public API against the files in `fixtures/` and `analysis-profiles/`.

mod analyze;
mod bad_input;
mod flagd;
mod helpers;
mod profiles;
