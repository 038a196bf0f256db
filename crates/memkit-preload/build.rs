fn main() {
    // Never unload libmemkit.so: blocks it handed out outlive any dlclose.
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,nodelete");
    // Resolve our own references to our own symbols (no PLT hops inside).
    println!("cargo:rustc-cdylib-link-arg=-Wl,-Bsymbolic-functions");
    // The soname programs linked with -lmemkit record (DT_NEEDED): the
    // major version, as the package installs it (libmemkit.so.0.1.0 with the
    // links libmemkit.so.0 and libmemkit.so; scripts/build-deb).
    // Code placement: the functions every program runs together, first in
    // .text (hot-text.ld says why: fault-around maps 64 KiB windows).
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-T,{dir}/hot-text.ld");
    println!("cargo:rerun-if-changed=hot-text.ld");
    println!("cargo:rerun-if-changed=build.rs");
    let major = std::env::var("CARGO_PKG_VERSION_MAJOR").expect("cargo sets it");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libmemkit.so.{major}");
}
