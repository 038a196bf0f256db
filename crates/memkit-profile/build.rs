fn main() {
    // Never unload the library: blocks it handed out outlive any dlclose.
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,nodelete");
    // Our own calls bind to our own symbols.
    println!("cargo:rustc-cdylib-link-arg=-Wl,-Bsymbolic-functions");
    // The soname, as for libmemkit.so (the package installs all alike).
    let major = std::env::var("CARGO_PKG_VERSION_MAJOR").expect("cargo sets it");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libmemkit_profile.so.{major}");
}
