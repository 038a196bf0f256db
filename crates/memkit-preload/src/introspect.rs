//! Introspection with glibc's interfaces, reporting memkit's real state
//! (the code is memkit-abi's `core_info`, shared with
//! libmemkit_profile.so).

memkit_abi::core_info_exports!();

pub use memkit_abi::core_info::write_stats;
